"""REST writes committed together (SQLite) still commit each with its own audit row, and a
refused one undoes only itself; on PostgreSQL each is its own transaction."""

from __future__ import annotations

import asyncio

import peewee
import pytest

from manager.db import base as dbbase
from manager.db.accounts import User
from manager.db.audit import AuditRecord
from manager.db.executor import DatabaseExecutor, DatabaseUnavailable
from manager.domain.errors import ValidationError
from manager.ops import audit
from manager.ops.writes import RestWrites, Write, run_batch

ACTOR = audit.Actor("admin", 1, "token", "127.0.0.1", "POST", "/api/user/", "req-1")


def create_user(name: str) -> tuple[int, dict]:
    user = User.create(username=name, password_hash="x")
    return 201, {"id": user.id}


def create_then_refuse(name: str) -> None:
    User.create(username=name, password_hash="x")
    raise ValidationError({"username": "refused after writing"})


def create_then_lose_the_database(name: str) -> None:
    User.create(username=name, password_hash="x")
    raise peewee.OperationalError("disk I/O error")


def user_write(fn, name: str, actor: audit.Actor | None = ACTOR) -> Write:
    return Write(fn, (name,), actor, "request", "user", None, {"username": name,
                                                              "password1": "secret-pw"})


def run_together(database: peewee.Database, writes: list[Write]) -> list:
    """Submit ``writes`` at once through ``RestWrites`` on one DB thread; their outcomes."""
    db = DatabaseExecutor(database, 1)

    async def scenario() -> list:
        rest = RestWrites(db)
        try:
            return await asyncio.gather(*(rest.run(w) for w in writes), return_exceptions=True)
        finally:
            await rest.stop()

    try:
        return asyncio.run(scenario())
    finally:
        db.shutdown()


def usernames() -> list[str]:
    return sorted(u.username for u in User.select())


def test_a_refused_write_undoes_only_itself(database: peewee.Database, statements) -> None:
    writes = [user_write(create_user, "ann"), user_write(create_then_refuse, "bob"),
              user_write(create_user, "cy", actor=None)]
    outcomes = run_batch(database, writes)
    assert outcomes[0][0] == 201 and outcomes[2][0] == 201
    assert isinstance(outcomes[1], ValidationError)
    assert usernames() == ["ann", "cy"]
    rows = list(AuditRecord.select())  # only the audited write that succeeded has a row
    assert [(r.object_id, r.status, r.outcome) for r in rows] == [(str(outcomes[0][1]["id"]),
                                                                  201, "ok")]
    assert "secret-pw" not in rows[0].summary and "ann" in rows[0].summary
    # one transaction; the rows of the whole batch go in one INSERT before its COMMIT
    assert statements.sent.count("INSERT") == 4  # three users (one undone), one audit INSERT
    assert not database.in_transaction()


def test_a_failure_of_the_database_ends_the_whole_batch(database: peewee.Database) -> None:
    writes = [user_write(create_user, "dee"), user_write(create_then_lose_the_database, "eve")]
    with pytest.raises(peewee.OperationalError):
        run_batch(database, writes)
    assert usernames() == [] and AuditRecord.select().count() == 0


def test_writes_queued_together_commit_together_on_sqlite(database: peewee.Database) -> None:
    commits: list[int] = []
    commit = database.commit

    def counting_commit() -> None:
        commits.append(len(usernames()))
        commit()

    database.commit = counting_commit
    results = run_together(database, [user_write(create_user, f"user{n}") for n in range(40)])
    assert all(result[0] == 201 for result in results)
    assert len(usernames()) == 40 and AuditRecord.select().count() == 40
    if not dbbase.is_postgres(database):  # (there an audited write commits by statement)
        assert commits == [40]  # all queued before the writer ran: one transaction


def test_a_lost_database_reaches_every_caller_as_unavailable(database: peewee.Database) -> None:
    results = run_together(database, [user_write(create_user, "fay"),
                                      user_write(create_then_lose_the_database, "gus")])
    assert isinstance(results[1], DatabaseUnavailable)
    if dbbase.is_postgres(database):  # each its own transaction
        assert results[0][0] == 201 and usernames() == ["fay"]
    else:  # one batch: neither is committed, and both callers hear why
        assert isinstance(results[0], DatabaseUnavailable) and usernames() == []
