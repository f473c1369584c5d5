"""The PostgreSQL database: transactions that begin with their first statement.

peewee sends ``BEGIN`` on its own, and each statement is a round trip in which the thread
hands the interpreter lock to the event loop and waits to get it back. Here ``begin()``
only marks the connection, and the next statement run on it goes as ``BEGIN; <statement>``
in one round trip: an audited API write (BEGIN, the change, its audit row with COMMIT)
saves one of its round trips, as does every engine batch. A transaction that ran nothing
sends neither BEGIN nor its COMMIT or ROLLBACK.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import peewee
import psycopg2.extensions

_pending: weakref.WeakSet[Any] = weakref.WeakSet()  # connections whose BEGIN is due
_lock = threading.Lock()


def _take_pending(connection: Any) -> bool:
    with _lock:
        if connection in _pending:
            _pending.discard(connection)
            return True
        return False


class DeferredBeginCursor(psycopg2.extensions.cursor):
    """Prefixes the BEGIN due on its connection to the statement it runs."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        if _take_pending(self.connection):
            query = "BEGIN;\n" + query
        return super().execute(query, vars)


class PostgresDatabase(peewee.PostgresqlDatabase):
    def __init__(self, database: str, **kwargs: Any) -> None:
        super().__init__(database, cursor_factory=DeferredBeginCursor, **kwargs)

    def begin(self, isolation_level: Any = None) -> None:
        if isolation_level or self._isolation_level:
            super().begin(isolation_level)
            return
        with _lock:
            _pending.add(self.connection())

    def commit(self) -> None:
        if not _take_pending(self.connection()):
            super().commit()

    def rollback(self) -> None:
        if self.is_closed() or not _take_pending(self.connection()):
            super().rollback()
