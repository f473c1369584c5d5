"""Logging for the manager: one line per event on stderr (journald picks it up), as text for
a terminal or JSON (``--log-format json``) for journald/ELK.

Every line logged while a request is handled carries its request id (a context variable
that follows the request onto database threads); lines about an action carry the action id
and host when the caller passes them as ``extra``.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_FIELDS = ("action_id", "host")


def _install_record_factory() -> None:
    """Every record gets ``request_id`` from the context, whoever logs it (once per process)."""
    base = logging.getLogRecordFactory()
    if getattr(base, "shepherd", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    factory.shepherd = True
    logging.setLogRecordFactory(factory)


_install_record_factory()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        tags = [f"{name}={getattr(record, name)}" for name in ("request_id", *_FIELDS)
                if getattr(record, name, "")]
        return f"{line} [{' '.join(tags)}]" if tags else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for name in ("request_id", *_FIELDS):
            if getattr(record, name, ""):
                doc[name] = getattr(record, name)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
