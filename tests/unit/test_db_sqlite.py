"""SQLite commits through its connection, not as a cursor's COMMIT statement."""

from __future__ import annotations

import sqlite3
from typing import Any

import peewee
import pytest

from manager.db import base as dbbase
from manager.db.sqlite import SqliteDatabase


@pytest.fixture
def database(tmp_path) -> SqliteDatabase:
    db = dbbase.open_database(f"sqlite:///{tmp_path}/unit.db")
    assert isinstance(db, SqliteDatabase)
    db.connect()
    db.execute_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
    yield db
    db.close()


def test_a_transaction_commits_without_a_commit_statement(database: SqliteDatabase,
                                                          tmp_path) -> None:
    by_cursor: list[str] = []
    cursor = database.cursor

    def recording_cursor() -> Any:
        real = cursor()

        class Recording:
            def execute(self, sql: str, *params: Any) -> Any:
                by_cursor.append(sql)
                return real.execute(sql, *params)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)
        return Recording()

    database.cursor = recording_cursor
    with database.atomic():
        database.execute_sql("INSERT INTO item (name) VALUES (?)", ("a",))
    assert by_cursor == ["BEGIN IMMEDIATE", "INSERT INTO item (name) VALUES (?)"]
    assert not database.in_transaction()
    other = sqlite3.connect(tmp_path / "unit.db")
    assert other.execute("SELECT name FROM item").fetchall() == [("a",)]
    other.close()


def test_a_failed_block_still_rolls_back(database: SqliteDatabase) -> None:
    with pytest.raises(ValueError), database.atomic():
        database.execute_sql("INSERT INTO item (name) VALUES (?)", ("b",))
        raise ValueError
    assert database.execute_sql("SELECT count(*) FROM item").fetchone() == (0,)
    assert not database.in_transaction()


def test_a_closed_database_cannot_commit(database: SqliteDatabase) -> None:
    database.close()
    with pytest.raises(peewee.InterfaceError):
        database.commit()
