"""A PostgreSQL deadlock is retried by the database executor, not reported as an outage."""

from __future__ import annotations

import threading

import peewee

from manager.db import base as dbbase
from manager.db.executor import DatabaseExecutor


def test_a_deadlock_is_run_again_and_both_transactions_commit(pg_server):
    database = dbbase.open_database(pg_server.fresh_database("shepherd_conflicts"))
    database.execute_sql("CREATE TABLE counter (id integer PRIMARY KEY, n integer NOT NULL)")
    database.execute_sql("INSERT INTO counter VALUES (1, 0), (2, 0)")
    database.close()
    executor = DatabaseExecutor(database, 2)
    both_hold_one = threading.Barrier(2, timeout=10)
    attempts = {"a": 0, "b": 0}

    def transfer(name: str, first: int, second: int) -> None:
        """Lock ``first`` then ``second``: run against each other, one of them deadlocks."""
        attempts[name] += 1
        with database.atomic():
            database.execute_sql("UPDATE counter SET n = n + 1 WHERE id = %s", (first,))
            if attempts[name] == 1:  # only the first try meets the other half-way
                both_hold_one.wait()
            database.execute_sql("UPDATE counter SET n = n + 1 WHERE id = %s", (second,))

    a = executor._pool.submit(executor.call, transfer, "a", 1, 2)
    b = executor._pool.submit(executor.call, transfer, "b", 2, 1)
    a.result(30)
    b.result(30)
    rows = executor.call(lambda: database.execute_sql("SELECT n FROM counter ORDER BY id").fetchall())
    assert rows == [(2,), (2,)]  # each transfer counted once
    assert sorted(attempts.values()) == [1, 2]  # the deadlock's victim ran again
    executor.shutdown()
    assert isinstance(database, peewee.PostgresqlDatabase)
