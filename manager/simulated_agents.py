"""Simulated agents beside the manager (``serve --simulated-agents N``), for a first look.

The manager creates a registration token and starts ``shepherd-agent simulate`` as a child
process, exactly as an admin would on another machine; the fleet's identities are kept in
the state directory, so a restart brings back the same hosts without a new token.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sys

from manager.db.base import utcnow
from manager.db.hosts import RegistrationToken, ServerProfile
from manager.domain.hosts import new_secret
from manager.http.context import AppContext

log = logging.getLogger("shepherd.simulated")


class SimulatedAgents:
    def __init__(self, ctx: AppContext, count: int) -> None:
        self.ctx = ctx
        self.count = count
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        state_dir = os.path.join(self.ctx.config.state_dir, "simulated-agents")
        registered = os.path.exists(os.path.join(state_dir, "fleet.json"))
        secret = "" if registered else await self.ctx.db.run(_token, self.count)
        argv = [sys.executable, "-m", "agent", "simulate", "--manager",
                f"https://localhost:{self.ctx.http_port}", "--ca-sha256", self.ctx.ca.fingerprint,
                "--count", str(self.count), "--prefix", "demo", "--state-dir", state_dir, "-q"]
        env = {**os.environ, "SHEPHERD_AGENT_TOKEN": secret}  # not on the command line
        self.proc = await asyncio.create_subprocess_exec(*argv, env=env)
        log.warning("started %d simulated agents (pid %d)", self.count, self.proc.pid)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()


def _token(count: int) -> str:
    """A token for the simulator's first start (later starts reuse the saved fleet)."""
    profile = ServerProfile.get(ServerProfile.name == "compute_node")
    token = RegistrationToken.create(secret=new_secret(), credits=count, profile=profile,
                                     expiry=utcnow() + datetime.timedelta(minutes=10),
                                     created_by="serve --simulated-agents")
    return token.secret
