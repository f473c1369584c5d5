"""Fixtures shared by the API and integration tests.

``manager`` (``tests.manager_process.package_manager``, assigned in each package's conftest)
is parametrised over both databases: every test that uses it runs against the embedded
SQLite and a real throwaway PostgreSQL server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api.client import Client
from manager.db.accounts import ApiToken, Group, User, UserGroup, WebSession
from manager.db.audit import AuditRecord
from manager.db.base import open_database
from manager.db.engine import Command, CommandJob, Job, JobLock, JobWait, Step
from manager.db.hosts import Action, Alert, Host, RegistrationToken
from manager.db.inventory import (
    Node,
    NodeGroup,
    NodeMac,
    PowerControlDevice,
    PowerControlDeviceOutlet,
)
from manager.domain import passwords
from tests.manager_process import RunningManager
from tests.pgcluster import ThrowawayPostgres

for _var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(_var, None)

ADMIN_PASSWORD = "admin-password-1"
USER_PASSWORD = "user-password-1"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_items(pg_server: ThrowawayPostgres) -> Iterator[Any]:
    """A new PostgreSQL database, connected, with one table: ``item (id, name)``."""
    database = open_database(pg_server.fresh_database("items"))
    database.connect()
    database.execute_sql("CREATE TABLE item (id integer PRIMARY KEY, name text)")
    yield database
    database.close()


@pytest.fixture(scope="session")
def password_hashes() -> dict[str, str]:
    """Hashes computed once, so resetting accounts per test costs no scrypt time."""
    return {ADMIN_PASSWORD: passwords.hash_password(ADMIN_PASSWORD),
            USER_PASSWORD: passwords.hash_password(USER_PASSWORD)}


@pytest.fixture
def accounts_reset(manager: RunningManager, password_hashes: dict[str, str]) -> RunningManager:
    """Empty the account tables and create ``admin`` (a superuser) afresh."""
    def reset() -> None:
        for model in (Step, JobLock, JobWait, CommandJob, Job, Command, AuditRecord, Alert,
                      NodeGroup, NodeMac, Node, PowerControlDeviceOutlet, PowerControlDevice,
                      Action, Host, RegistrationToken, WebSession, ApiToken,
                      UserGroup, User):
            model.delete().execute()
        admin = User.create(username="admin", password_hash=password_hashes[ADMIN_PASSWORD])
        UserGroup.create(user=admin, group=Group.get(Group.name == "superusers"))
    # the engine's running jobs belong to the previous test: stop them before their rows go
    # (SQLite reuses ids, and a leftover task would take over a new job of the same id)
    engine = manager.manager.ctx.engine
    asyncio.run_coroutine_threadsafe(engine.stop(), manager.loop).result(60)
    try:
        manager.db(reset)
    finally:
        manager.loop.call_soon_threadsafe(engine.start)
    manager.manager.ctx.throttle.clear()
    return manager


@pytest.fixture
def anon(accounts_reset: RunningManager) -> Client:
    return Client(accounts_reset.url, verify=accounts_reset.ca_path, retries=1)


@pytest.fixture
def admin(accounts_reset: RunningManager) -> Client:
    client = Client(accounts_reset.url, verify=accounts_reset.ca_path, retries=1)
    client.login("admin", ADMIN_PASSWORD)
    return client


@pytest.fixture
def make_user(accounts_reset: RunningManager,
              password_hashes: dict[str, str]) -> Callable[..., Client]:
    """``make_user("alice", "filesystem_users")`` → a Client logged in as that new user."""
    def make(username: str, *groups: str) -> Client:
        def create() -> None:
            user = User.create(username=username, password_hash=password_hashes[USER_PASSWORD])
            for name in groups:
                UserGroup.create(user=user, group=Group.get(Group.name == name))
        accounts_reset.db(create)
        client = Client(accounts_reset.url, verify=accounts_reset.ca_path, retries=1)
        client.login(username, USER_PASSWORD)
        return client
    return make
