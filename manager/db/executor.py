"""Runs database work on a small thread pool so the event loop never waits on a query.

Each thread keeps its own connection open between calls (opened on first use). A lost or
unreachable database becomes ``DatabaseUnavailable`` (the HTTP layer answers 503) and the
broken connection is dropped, so the manager recovers by itself when the database returns.
A PostgreSQL deadlock or serialization failure is not an outage: the call runs again (a few
times, after a short random pause), so each call must be one transaction or idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import peewee

log = logging.getLogger(__name__)
T = TypeVar("T")
CONFLICT_RETRIES = 4


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection."""


class DatabaseExecutor:
    def __init__(self, database: peewee.Database, threads: int, metrics: Any = None) -> None:
        self.database = database
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="db")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a DB thread with a connection; await its result.

        The caller's context variables (the request id of log lines) go along."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, self.call, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Synchronous form of ``run`` for code already on a DB thread (or in tests)."""
        if self.metrics is None:
            return self._call(fn, *args, **kwargs)
        self.metrics.db_call_started()
        start = time.perf_counter()
        try:
            return self._call(fn, *args, **kwargs)
        finally:
            self.metrics.db_call_finished(time.perf_counter() - start)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        for attempt in range(CONFLICT_RETRIES):
            try:
                self.database.connect(reuse_if_open=True)
                return fn(*args, **kwargs)
            except (peewee.OperationalError, peewee.InterfaceError) as exc:
                if not _is_conflict(exc) or attempt == CONFLICT_RETRIES - 1:
                    self._unavailable(exc)
                # PostgreSQL rolled the transaction back whole: running it again is safe
                log.info("database conflict (%s); retrying", _first_line(exc))
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _unavailable(self, exc: Exception) -> None:
        if _is_lock_timeout(exc) or _is_conflict(exc):
            raise DatabaseUnavailable("database busy, try again") from exc
        self._drop_connection()
        log.warning("database unavailable: %s", _first_line(exc))
        raise DatabaseUnavailable("database unavailable") from exc

    def _drop_connection(self) -> None:
        """Forget this thread's broken connection; the next call opens a new one."""
        with contextlib.suppress(peewee.PeeweeException):
            self.database.close()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        with contextlib.suppress(peewee.PeeweeException):
            self.database.close()


def _is_lock_timeout(exc: Exception) -> bool:
    return "database is locked" in str(exc)


def _is_conflict(exc: Exception) -> bool:
    """A PostgreSQL deadlock or serialization failure: the server rolled the transaction
    back, and running it again is the documented remedy."""
    # peewee re-raises the driver's error as its own; the original is its context
    candidates = (exc.__cause__, exc.__context__, *exc.args)
    return any(getattr(c, "pgcode", None) in ("40P01", "40001") for c in candidates)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
