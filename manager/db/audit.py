"""The audit log: who changed what, from where, when, and how it ended."""

from __future__ import annotations

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
        self.row: dict[str, Any] | None = None

    def commit(self, begin: bool = True) -> None:
        if begin or self.row is None:
            super().commit(begin)
            return
        statements = fastsql.insert_statements(AuditRecord, [self.row], prepare=True)
        self.row = None
        if not is_postgres(self.db):
            fastsql.execute_together(self.db, statements)
            super().commit(begin)
            return
        fastsql.execute_together(self.db, [*statements, ("COMMIT", [])])
        self.db._run_commit_callbacks()
