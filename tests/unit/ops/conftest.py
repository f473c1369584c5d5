"""Fixtures of the ops tests: a migrated database of each kind, and the statements sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import peewee
import pytest

from manager.db import base as dbbase
from manager.db.migrations import migrate
from tests.pgcluster import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path) -> Iterator[peewee.Database]:
    db = dbbase.open_database(database_url(request, str(tmp_path), "shepherd_unit_audit"))
    dbbase.bind(db)
    migrate(db)
    yield db
    db.close()


class Statements:
    """Records each call's statements (their first words): one call is one round trip."""

    def __init__(self, database: peewee.Database) -> None:
        self.sent: list[str] = []
        self._cursor = database.cursor
        database.cursor = self.cursor

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        real, sent = self._cursor(*args, **kwargs), self.sent

        class Recording:
            def execute(self, sql: str, *params: Any) -> Any:
                sent.append("; ".join(part.split(None, 1)[0] for part in sql.split(";\n")))
                return real.execute(sql, *params)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)
        return Recording()


@pytest.fixture
def statements(database: peewee.Database) -> Statements:
    return Statements(database)
