"""PostgreSQL transactions begin with their first statement (manager/db/postgres.py)."""

from __future__ import annotations

import peewee
import psycopg2.extensions
import pytest

IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
IN_TRANSACTION = psycopg2.extensions.TRANSACTION_STATUS_INTRANS


@pytest.fixture
def pg(pg_items):
    return pg_items


def _status(database: peewee.Database) -> int:
    return database.connection().info.transaction_status


def _ids(database: peewee.Database) -> list[int]:
    return [i for (i,) in database.execute_sql("SELECT id FROM item ORDER BY id")]


def test_begin_waits_for_the_first_statement_and_rollback_undoes_it(pg):
    pg.begin()
    assert _status(pg) == IDLE  # nothing sent yet
    pg.execute_sql("INSERT INTO item VALUES (1)")
    assert _status(pg) == IN_TRANSACTION
    pg.rollback()
    assert _status(pg) == IDLE and _ids(pg) == []


def test_an_empty_transaction_sends_nothing(pg):
    with pg.atomic():
        assert _status(pg) == IDLE
    assert _status(pg) == IDLE
    pg.execute_sql("INSERT INTO item VALUES (2)")  # autocommitted, not in a stale BEGIN
    assert _status(pg) == IDLE and _ids(pg) == [2]


def test_atomic_blocks_and_savepoints_behave_as_before(pg):
    with pytest.raises(ValueError), pg.atomic():
        pg.execute_sql("INSERT INTO item VALUES (3)")
        raise ValueError
    with pg.atomic():
        pg.execute_sql("INSERT INTO item VALUES (4)")
        with pytest.raises(peewee.IntegrityError), pg.atomic():  # a savepoint
            pg.execute_sql("INSERT INTO item VALUES (4)")
        pg.execute_sql("INSERT INTO item VALUES (5)")
    assert _ids(pg) == [4, 5]


def test_a_transaction_whose_first_statement_fails_rolls_back_cleanly(pg):
    with pytest.raises(peewee.ProgrammingError), pg.atomic():
        pg.execute_sql("SELECT * FROM no_such_table")
    assert _status(pg) == IDLE
    pg.execute_sql("INSERT INTO item VALUES (6)")
    assert _ids(pg) == [6]
