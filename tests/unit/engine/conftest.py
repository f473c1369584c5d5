"""The engine tests' database: SQLite in a temporary directory, migrated, with one host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from manager.db import base as dbbase
from manager.db.executor import DatabaseExecutor
from manager.db.hosts import Host, ServerProfile
from manager.db.migrations import migrate


@pytest.fixture
def db(tmp_path) -> Iterator[DatabaseExecutor]:
    database = dbbase.open_database(f"sqlite:///{tmp_path}/engine.db")
    dbbase.bind(database)
    migrate(database)
    profile = ServerProfile.get(ServerProfile.name == "compute_node")
    Host.create(id=1, fqdn="agent1.example", nodename="agent1", server_profile=profile,
                state="working", roles=",compute,")
    executor = DatabaseExecutor(database, 1)
    yield executor
    executor.shutdown()
