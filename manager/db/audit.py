"""The audit log: who changed what, from where, when, and how it ended."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import peewee

from manager.db import fastsql
from manager.db.base import BaseModel, is_postgres, utcnow


class AuditRecord(BaseModel):
    at = peewee.DateTimeField(default=utcnow, index=True)
    kind = peewee.CharField(max_length=16)  # request | login | action
    username = peewee.CharField(max_length=150, default="", index=True)
    user_id = peewee.IntegerField(null=True)
    credential = peewee.CharField(max_length=16, default="")  # token | session | ""
    address = peewee.CharField(max_length=64, default="")
    method = peewee.CharField(max_length=8, default="")
    path = peewee.CharField(max_length=512, default="")
    object_type = peewee.CharField(max_length=64, default="")
    object_id = peewee.CharField(max_length=64, default="")
    summary = peewee.TextField(default="{}")
    status = peewee.IntegerField(null=True)
    outcome = peewee.CharField(max_length=32, default="")
    command_id = peewee.IntegerField(null=True)
    action_id = peewee.CharField(max_length=32, null=True)  # indexed where set (migration 7)
    request_id = peewee.CharField(max_length=64, default="")

    class Meta:
        indexes = ((("object_type", "object_id"), False),)


#: a request's or login's audit row as ``insert_statement`` and ``insert_many`` take it: the
#: values of these columns, in this order (``at`` is added as the row is inserted). A tuple,
#: not a dict: on SQLite the rows are built and bound on the one database thread, where the
#: dict and its per-field conversion cost more than the row's own insert.
ROW_COLUMNS = ("kind", "username", "user_id", "credential", "address", "method", "path",
               "object_type", "object_id", "summary", "status", "outcome", "command_id",
               "request_id")
_COLUMN_LIST = ", ".join(f'"{c}"' for c in ROW_COLUMNS)
#: on SQLite ``at`` goes first, as a parameter
_SQLITE_COLUMNS = ("at", *ROW_COLUMNS)

#: one encoder for every row sent as JSON (``json.dumps`` with options builds one per call)
_ROW_ENCODER = json.JSONEncoder()


def _json_insert(function: str) -> str:
    """An INSERT on PostgreSQL of the rows in one JSON parameter (``function`` reads them),
    ``at`` the transaction's start."""
    picked = ", ".join(f'r."{c}"' for c in ROW_COLUMNS)
    return (f'INSERT INTO "audit_record" ("at", {_COLUMN_LIST}) '
            f"SELECT now() AT TIME ZONE 'UTC', {picked} "
            f'FROM {function}(NULL::"audit_record", %s::json) AS r')


_JSON_INSERT_ONE = _json_insert("json_populate_record")
_JSON_INSERT_MANY = _json_insert("json_populate_recordset")


def insert_statement(database: peewee.Database, row: tuple) -> fastsql.Statement:
    """The INSERT of one audit row, at the time it is written.

    On PostgreSQL the row goes as one JSON parameter of a prepared statement: psycopg2
    quotes each parameter in Python on the write's database thread, and fifteen of them (a
    timestamp among them) cost it more than encoding the row once. Side by side under the
    write benchmark this cut the manager's CPU per audited POST by about 2 %; the server's
    work stayed the same."""
    if not is_postgres(database):
        return fastsql.insert_sql("audit_record", _SQLITE_COLUMNS, "?", 1), [str(utcnow()), *row]
    return (fastsql.prepared(database, _JSON_INSERT_ONE),
            [_ROW_ENCODER.encode(dict(zip(ROW_COLUMNS, row, strict=True)))])


def insert_row(database: peewee.Database, row: tuple) -> None:
    """Insert one audit row now (``insert_statement``)."""
    fastsql.execute_together(database, [insert_statement(database, row)])


def insert_many(database: peewee.Database, rows: Sequence[tuple]) -> None:
    """Insert rows that commit together (a batch of writes), all with the one time.

    On SQLite ``at`` goes as the text the driver would make of the datetime (``str`` of it),
    made once for the batch."""
    if not rows:
        return
    if is_postgres(database):
        text = _ROW_ENCODER.encode([dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows])
        fastsql.execute_together(database, [(_JSON_INSERT_MANY, [text])])
        return
    at = str(utcnow())
    cursor = database.cursor()
    for start in range(0, len(rows), fastsql.ROWS_PER_INSERT):
        chunk = rows[start:start + fastsql.ROWS_PER_INSERT]
        params: list[Any] = []
        for row in chunk:
            params.append(at)
            params += row
        cursor.execute(fastsql.insert_sql("audit_record", _SQLITE_COLUMNS, "?", len(chunk)),
                       params)


class AuditedTransaction(peewee._transaction):
    """A top-level transaction that inserts its audit row as it commits.

    Each statement hands the interpreter lock away while it runs, and under load each
    hand-off costs the database thread a wait for the event loop to give the lock back. On
    PostgreSQL the row goes in the same round trip as the COMMIT (without peewee's
    ``RETURNING id``, which nobody reads). On SQLite the row is its own statement, and the
    commit is the connection's own: a COMMIT run as a cursor's statement hands the lock away
    twice (its step, then its reset), the connection's commit once. Set ``row`` before the
    block ends; a block that raises rolls back and inserts nothing. Only the outermost
    transaction commits, so enter it only when ``database.in_transaction()`` is false.
    """

    def __init__(self, database: peewee.Database | peewee.DatabaseProxy) -> None:
        # the bound database itself: the transaction calls its private commit callbacks
        super().__init__(database.obj if isinstance(database, peewee.DatabaseProxy) else database)
        self.row: tuple | None = None

    def commit(self, begin: bool = True) -> None:
        if begin or self.row is None:
            super().commit(begin)
            return
        row, self.row = self.row, None
        if not is_postgres(self.db):
            insert_row(self.db, row)
            super().commit(begin)
            return
        fastsql.execute_together(self.db, [insert_statement(self.db, row), ("COMMIT", [])])
        self.db._run_commit_callbacks()
