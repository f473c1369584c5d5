"""The audit row of a write commits with it, on both databases, in as few round trips as
the transaction allows."""

from __future__ import annotations

import datetime
import json

import peewee
import pytest

from manager.db import base as dbbase
from manager.db import fastsql
from manager.db.accounts import User
from manager.db.audit import ROW_COLUMNS, AuditRecord, insert_many
from manager.ops import audit

ACTOR = audit.Actor("admin", 1, "token", "127.0.0.1", "POST", "/api/user/", "req-1")


def create_user(name: str) -> tuple[int, dict]:
    user = User.create(username=name, password_hash="x")
    return 201, {"id": user.id, "command": {"id": 7}}


def test_a_write_and_its_row_commit_together(database: peewee.Database) -> None:
    body = {"username": "dora", "password1": "secret-1"}
    assert audit.run_audited(ACTOR, "request", "user", None, body, create_user, "dora")[0] == 201
    row = AuditRecord.get()
    user = User.get(User.username == "dora")
    assert (row.object_type, row.object_id, row.status, row.outcome, row.command_id) == (
        "user", str(user.id), 201, "ok", 7)
    assert (row.username, row.method, row.path, row.request_id) == (
        "admin", "POST", "/api/user/", "req-1")
    assert json.loads(row.summary) == {"username": "dora", "password1": "********"}
    assert row.at is not None


def test_the_row_keeps_every_value_as_given(database: peewee.Database) -> None:
    """On PostgreSQL the row travels as JSON: quotes, backslashes, non-ASCII text and
    nulls must come back exactly, and ``at`` is the write's time."""
    actor = audit.Actor("zoë \"o'hara\" \\", None, "", "::1", "PATCH", "/api/host/ö'1/", "r\\2")
    before = dbbase.utcnow()
    audit.run_audited(actor, "request", "host", "ö'1", {"name": "line\nbreak 'q' \"dq\""},
                      lambda: None)
    after = dbbase.utcnow()
    row = AuditRecord.get()
    assert (row.username, row.user_id, row.credential, row.address, row.path,
            row.request_id) == ("zoë \"o'hara\" \\", None, "", "::1", "/api/host/ö'1/", "r\\2")
    assert (row.object_id, row.status, row.command_id, row.action_id) == ("ö'1", 204, None, None)
    assert json.loads(row.summary) == {"name": "line\nbreak 'q' \"dq\""}
    # the database's clock on PostgreSQL (the same machine's here): allow for its rounding
    assert before - datetime.timedelta(seconds=1) <= row.at <= after + datetime.timedelta(seconds=1)


def test_rows_inserted_together_keep_their_values_and_share_one_time(
        database: peewee.Database) -> None:
    """A batch's rows (``insert_many``: a JSON array on PostgreSQL, multi-row INSERTs of at
    most ``ROWS_PER_INSERT`` rows on SQLite) come back as given, in order, all at one time."""
    actor = audit.Actor("zoë \"o'hara\" \\", None, "", "::1", "PATCH", "/api/host/ö'1/", "r\\2")
    count = fastsql.ROWS_PER_INSERT + 1
    rows = [audit.row_values(actor, "request", "host", i, f'{{"n": {i}}}', 200 + i % 3,
                             "ok", None if i % 2 else i) for i in range(count)]
    before = dbbase.utcnow()
    with database.atomic():
        insert_many(database, rows)
    after = dbbase.utcnow()
    stored = list(AuditRecord.select().order_by(AuditRecord.id))
    assert [tuple(getattr(r, c) for c in ROW_COLUMNS) for r in stored] == rows
    assert len({r.at for r in stored}) == 1
    assert before - datetime.timedelta(seconds=1) <= stored[0].at <= after + datetime.timedelta(seconds=1)


def test_the_row_travels_with_the_commit(database: peewee.Database, statements) -> None:
    sent = statements.sent
    audit.run_audited(ACTOR, "request", "user", None, {}, create_user, "ed")
    if dbbase.is_postgres(database):
        # two round trips: BEGIN goes with the first statement (manager/db/postgres.py), and
        # the audit row (a prepared statement's EXECUTE) with the COMMIT
        assert sent == ["INSERT", "EXECUTE; COMMIT"]
    else:
        # the change, then the row; the connection commits (manager/db/sqlite.py)
        assert sent == ["BEGIN", "INSERT", "INSERT"]
    assert not database.in_transaction()


def test_a_failed_write_leaves_neither_change_nor_row(database: peewee.Database) -> None:
    def fails() -> None:
        User.create(username="gone", password_hash="x")
        raise ValueError("refused")

    with pytest.raises(ValueError):
        audit.run_audited(ACTOR, "request", "user", None, {}, fails)
    assert User.select().where(User.username == "gone").count() == 0
    assert AuditRecord.select().count() == 0
    assert not database.in_transaction()


def test_with_audit_off_a_write_is_still_one_transaction(database: peewee.Database) -> None:
    def half_done() -> None:
        User.create(username="half", password_hash="x")
        assert database.in_transaction()
        raise ValueError("refused after a change")

    with pytest.raises(ValueError):
        audit.run_unaudited(half_done)
    assert User.select().where(User.username == "half").count() == 0
    assert audit.run_unaudited(create_user, "gil")[0] == 201
    assert User.select().where(User.username == "gil").count() == 1
    assert AuditRecord.select().count() == 0


def test_inside_a_callers_transaction_the_row_commits_with_it(database: peewee.Database) -> None:
    with database.atomic() as transaction:
        audit.run_audited(ACTOR, "request", "user", None, {}, create_user, "fay")
        assert AuditRecord.select().count() == 1
        transaction.rollback()
    assert AuditRecord.select().count() == 0 and User.select().count() == 0


def test_results_without_a_status_are_200_or_204(database: peewee.Database) -> None:
    audit.run_audited(ACTOR, "request", "token", 5, {}, lambda: None)
    audit.run_audited(ACTOR, "login", "session", None, {}, lambda: "session-key")
    rows = AuditRecord.select().order_by(AuditRecord.id)
    assert [(r.kind, r.object_id, r.status) for r in rows] == [
        ("request", "5", 204), ("login", "", 200)]


def test_a_refusal_is_recorded_alone(database: peewee.Database) -> None:
    audit.record(ACTOR, "login", "", None, {"username": "admin", "password": "guess"}, 400,
                 "refused")
    row = AuditRecord.get()
    assert (row.kind, row.status, row.outcome) == ("login", 400, "refused")
    assert json.loads(row.summary) == {"password": "********", "username": "admin"}


def test_only_action_rows_are_in_the_action_index(database: peewee.Database) -> None:
    rows = [{"created_at": dbbase.utcnow(), "caused_by": "admin", "host": 1, "id": f"a{n}",
             "name": "agent.ping", "args": "{}"} for n in range(50)]
    fastsql.insert(AuditRecord, audit.action_rows(rows))
    for n in range(2000):
        audit.record(ACTOR, "request", "user", n, {}, 201, "ok")
    if dbbase.is_postgres(database):
        database.execute_sql("ANALYZE audit_record")
        database.execute_sql("SET enable_seqscan = off")  # the plan the index allows
        indexed = database.execute_sql(
            "SELECT count(*) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
            "WHERE c.relname = 'audit_record_action_id' AND i.indpred IS NOT NULL").fetchone()
        assert indexed == (1,)
    else:
        (definition,) = database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = 'audit_record_action_id'").fetchone()
        assert 'WHERE "action_id" IS NOT NULL' in definition
    query = AuditRecord.update(outcome="succeeded").where(AuditRecord.action_id.in_(["a1", "a2"]))
    sql, params = query.sql()
    plan = " ".join(str(r) for r in database.execute_sql(f"EXPLAIN QUERY PLAN {sql}"
                                                         if not dbbase.is_postgres(database)
                                                         else f"EXPLAIN {sql}", params))
    assert "audit_record_action_id" in plan
    audit.actions_finished({"succeeded": ["a1", "a2"]})
    outcomes = AuditRecord.select(AuditRecord.outcome).where(AuditRecord.kind == "action")
    assert sorted(r.outcome for r in outcomes) == ["queued"] * 48 + ["succeeded"] * 2
