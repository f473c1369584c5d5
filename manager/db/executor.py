"""Runs database work on a small thread pool so the event loop never waits on a query.

Every call borrows a pooled connection for its duration. A lost or unreachable database
becomes ``DatabaseUnavailable`` (the HTTP layer answers 503) and the broken connection is
dropped from the pool, so the manager recovers by itself when the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import peewee

log = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection."""


class DatabaseExecutor:
    def __init__(self, database: peewee.Database, threads: int) -> None:
        self.database = database
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="db")

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a DB thread with a connection; await its result."""
        loop = asyncio.get_running_loop()
        call = functools.partial(self.call, fn, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Synchronous form of ``run`` for code already on a DB thread (or in tests)."""
        try:
            with self.database.connection_context():
                return fn(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if _is_lock_timeout(exc):
                raise DatabaseUnavailable("database busy, try again") from exc
            self._discard_connection()
            log.warning("database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
            raise DatabaseUnavailable("database unavailable") from exc

    def _discard_connection(self) -> None:
        # The connection is already broken: dropping it from the pool is all that matters.
        with contextlib.suppress(peewee.PeeweeException):
            if not self.database.is_closed():
                self.database.manual_close()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self.database.close_all()


def _is_lock_timeout(exc: Exception) -> bool:
    return "database is locked" in str(exc)
