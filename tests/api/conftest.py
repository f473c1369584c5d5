"""The API tests' manager (one per database, for this package only) and the fixtures of the
engine's tests."""

import pytest

from tests.api.engine_helpers import onboard_queued
from tests.manager_process import package_manager

manager = package_manager()


@pytest.fixture
def finish_leftover_jobs(admin):
    """Cancel what a test left running, so its job tasks end now (the engine's test modules
    use it on every test): the next test empties the tables, and SQLite then reuses job ids,
    so a task still waiting would take over a new job of the same id (delaying its first
    step by up to 2 s, dispatch's polling interval)."""
    yield
    for command in admin.get("/api/command/", complete="false", limit=0)["objects"]:
        admin.patch(command["resource_uri"], {"cancelled": True})


@pytest.fixture
def host_id(admin, accounts_reset):
    """A registered host whose agent never connects: its set-up command stays unfinished,
    its first job tasked with its action queued."""
    return onboard_queued(accounts_reset, admin, "cmd.example").host_id
