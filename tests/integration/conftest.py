"""Fixtures of the integration tests: two network-namespace hosts and a manager they reach."""

from __future__ import annotations

import contextlib
import logging

import pytest

from tests.agents_fixture import Lan
from tests.netns import NetnsHost


@pytest.fixture(autouse=True)
def manager_log(caplog):
    """The in-process manager's INFO lines (connects, disconnects, claims) in a failure's
    report: a timeout alone does not say which side stopped talking."""
    caplog.set_level(logging.INFO, logger="shepherd")


@pytest.fixture
def hosts():
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(NetnsHost()) for _ in range(2)]


@pytest.fixture
def lan(tmp_path, hosts):
    running = Lan(str(tmp_path), hosts).start()
    yield running
    running.stop()
