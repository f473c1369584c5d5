"""A real manager for tests: the same ``Manager`` that ``serve`` runs, on its own event-loop
thread, listening on a free port with HTTPS and its own CA."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from manager import config as config_mod
from manager.server import Manager
from tests.pgcluster import database_url


class RunningManager:
    #: managers started and not yet stopped: models reach the database through one
    #: process-wide proxy, so tests that bind their own database check this is empty
    live: ClassVar[set[RunningManager]] = set()

    def __init__(self, state_dir: str, database_url: str, **settings: Any) -> None:
        flags = {"state_dir": state_dir, "database_url": database_url, "port": 0,
                 "agent_port": 0, "registration_port": 0, "contact_timeout": 3,
                 "heartbeat_interval": 1,
                 "address": "127.0.0.1", "auth_cache_ttl": 0, **settings}
        self.config = config_mod.load(flags=flags, environ={})
        self.manager = Manager(self.config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="manager", daemon=True)

    def start(self) -> RunningManager:
        self.thread.start()
        RunningManager.live.add(self)
        asyncio.run_coroutine_threadsafe(self.manager.start(), self.loop).result(60)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.manager.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        RunningManager.live.discard(self)

    @property
    def url(self) -> str:
        return self.manager.url

    @property
    def ca_path(self) -> str:
        return os.path.join(self.config.state_dir, "tls", "ca.crt")

    def on_loop(self, coro: Any) -> asyncio.Future:
        """Run a coroutine on the manager's loop; await the result from any other loop."""
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    @property
    def dispatcher(self) -> Any:
        return self.manager.ctx.dispatcher

    @property
    def registration_address(self) -> str:
        return f"localhost:{self.manager.ctx.registration_port}"

    @property
    def agent_address(self) -> str:
        return f"localhost:{self.manager.ctx.agent_port}"

    def ca_pem(self) -> bytes:
        with open(self.ca_path, "rb") as f:
            return f.read()

    def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` against the manager's database from the test's thread."""
        return self.manager.ctx.db.call(fn, *args)


def package_manager() -> Any:
    """The ``manager`` fixture of one test package (assign it in the package's conftest):
    one manager per database, stopped after the package's last test.

    Defined in the top ``tests/conftest.py`` it would be the ``tests`` package's, alive until
    the session ends: a later test binding its own database would have that manager's engine
    working on it (an idle API manager once claimed and cancelled an engine test's job)."""
    @pytest.fixture(scope="package", params=["sqlite", "postgresql"], name="manager")
    def manager(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningManager]:
        state_dir = str(tmp_path_factory.mktemp(f"manager-{request.param}"))
        running = RunningManager(state_dir, database_url(request, state_dir, "shepherd_api")).start()
        yield running
        running.stop()
    return manager
