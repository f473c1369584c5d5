"""Refuse an oversized request body from its headers, before any of it is read.

Tornado checks ``Content-Length`` against the server's ``max_body_size`` only when it starts
reading the body, and then answers a bare ``400`` that no handler sees. This delegate sits in
front of the application: a request that declares more than ``limit`` bytes gets a ``413`` in
its API family's error shape at once, and the body is discarded unbuffered (for a bounded
time) before the connection closes, so a client cannot make the manager hold more than
``limit`` bytes.

A chunked body declares no length. For those the connection's own limit is lifted (Tornado
would stop them with its bare ``400``) and the bytes are counted as they arrive: once they
pass ``limit`` the request gets the same ``413``, and the rest is discarded the same way.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import time
import uuid
from collections.abc import Awaitable
from typing import Any

from tornado import httputil, iostream

from manager.http import errors

log = logging.getLogger("shepherd.http")
_DIGITS = re.compile(r"[0-9]+")
LINGER_SECONDS = 10.0  # at most this long spent discarding a refused body
LINGER_IDLE_SECONDS = 0.5  # a client silent this long has stopped sending
#: the connection's limit for a chunked body: never reached, the delegate counts instead
_UNLIMITED = 1 << 62


class BodyLimit(httputil.HTTPServerConnectionDelegate):
    def __init__(self, app: httputil.HTTPServerConnectionDelegate, limit: int,
                 metrics: Any = None) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics

    def start_request(self, server_conn: object,
                      request_conn: httputil.HTTPConnection) -> httputil.HTTPMessageDelegate:
        return _Guard(self, self.app.start_request(server_conn, request_conn), request_conn)

    def on_close(self, server_conn: object) -> None:
        self.app.on_close(server_conn)


class _Guard(httputil.HTTPMessageDelegate):
    """Passes a request through unless its declared length is over the limit."""

    def __init__(self, owner: BodyLimit, inner: httputil.HTTPMessageDelegate,
                 conn: httputil.HTTPConnection) -> None:
        self.owner = owner
        self.inner = inner
        self.conn = conn
        self.refused = False
        self.start_line: httputil.RequestStartLine | None = None
        self.counted: int | None = None  # bytes of a chunked body so far

    def headers_received(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                         headers: httputil.HTTPHeaders) -> Awaitable[None] | None:
        assert isinstance(start_line, httputil.RequestStartLine)
        declared = _declared_length(headers)
        if declared is not None and declared > self.owner.limit:
            self.refused = True
            return self._refuse(start_line, f"({declared} declared)")
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            self.start_line, self.counted = start_line, 0
            self.conn.set_max_body_size(_UNLIMITED)  # type: ignore[attr-defined]
        return self.inner.headers_received(start_line, headers)

    async def _refuse(self, start_line: httputil.RequestStartLine, detail: str) -> None:
        started = time.monotonic()
        path = start_line.path.split("?", 1)[0]
        family = errors.family_of(path)
        request_id = uuid.uuid4().hex[:16]
        error = errors.ApiError(413, f"Request body exceeds {self.owner.limit} bytes {detail}.")
        content_type, body = errors.render(family, error, request_id, path)
        headers = httputil.HTTPHeaders({"Content-Type": content_type,
                                        "Content-Length": str(len(body)),
                                        "Connection": "close", "X-Request-Id": request_id,
                                        "Cache-Control": "no-store"})
        log.warning("413 %s %s: body %s, limit %d request_id=%s", start_line.method,
                    path, detail.strip("()"), self.owner.limit, request_id)
        # the rest of the body is never read: let the connection's reader see any length as
        # allowed, then close the stream under it once the answer has gone out
        self.conn.set_max_body_size(_UNLIMITED)  # type: ignore[attr-defined]
        await self.conn.write_headers(
            httputil.ResponseStartLine("HTTP/1.1", 413, http.client.responses[413]), headers, body)
        await _linger(self.conn.stream)  # type: ignore[attr-defined]
        self.conn.finish()  # the request is unread, so this closes the connection
        if self.owner.metrics is not None:
            self.owner.metrics.request_answered(family, "other", start_line.method, 413,
                                                time.monotonic() - started)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        if self.refused:
            return None
        if self.counted is not None:
            self.counted += len(chunk)
            if self.counted > self.owner.limit:
                self.refused = True
                self.inner.on_connection_close()  # it will never see the rest: let it go
                return self._refuse(self.start_line, "(chunked)")
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        if not self.refused:
            self.inner.finish()

    def on_connection_close(self) -> None:
        if not self.refused:
            self.inner.on_connection_close()


async def _linger(stream: iostream.IOStream) -> None:
    """Read and drop what the client still sends, for a while, before closing.

    A client that sends its body without waiting for an answer (most do) is still writing
    when the 413 goes out; closing with its data unread resets the connection, and the
    client sees the reset instead of the answer. So, like a web server's lingering close,
    the rest is discarded until the client stops sending (or ``LINGER_SECONDS`` pass)."""
    deadline = time.monotonic() + LINGER_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        try:
            await asyncio.wait_for(stream.read_bytes(1 << 16, partial=True),
                                   min(left, LINGER_IDLE_SECONDS))
        except (TimeoutError, iostream.StreamClosedError):
            return


def _declared_length(headers: httputil.HTTPHeaders) -> int | None:
    """The Content-Length as a number; None when absent or malformed (Tornado refuses those)."""
    value = headers.get("Content-Length")
    if value is None:
        return None
    first = value.split(",", 1)[0].strip()
    if not _DIGITS.fullmatch(first):
        return None
    return int(first) if len(first) <= 18 else 10**18  # more digits than any limit has
