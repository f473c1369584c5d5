"""A fleet of simulated agents: register them with one token, hold their streams, stop them.

Registration shares one server-TLS channel (Register needs no client certificate) and keeps
at most ``max_in_flight`` requests going; connections start in waves so a 10,000-agent start
looks like a well-behaved reconnect storm (grpc-scale.md: uncapped storms fail handshakes).
Identities can be saved to one JSON file so a fleet restarts without a new token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import resource
import time

import grpc

from agent import __version__, identity, inventory
from agent.actions import Registry, diagnostics, host, power, report
from agent.config import AgentConfig
from agent.connection import AgentConnection
from agent.protocol import PROTOCOL_VERSION
from agent.runner import ActionRunner
from agent.simulator.bmc import SimulatedBmcs
from agent.simulator.machine import MemoryOutbox, SimulatedMachine
from agent.state import Identity, write_files
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SimulatedAgent:
    machine: SimulatedMachine
    identity: Identity
    host_id: int
    connection: AgentConnection | None = None
    runner: ActionRunner | None = None


class Fleet:
    def __init__(self, agent_address: str, registration_address: str, ca_pem: bytes,
                 roles: list[str], config: AgentConfig | None = None) -> None:
        self.agent_address = agent_address
        self.registration_address = registration_address
        self.ca_pem = ca_pem
        self.roles = roles
        self.config = config or AgentConfig(state_dir="/nonexistent", backoff_min_s=1.0)
        self.agents: list[SimulatedAgent] = []
        self.bmcs = SimulatedBmcs()     # the nodes' power, whichever agent switches it
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # --- registration ------------------------------------------------------------------

    async def register(self, token: str, count: int, prefix: str, domain: str,
                       max_in_flight: int = 64) -> float:
        """Register ``count`` agents named ``{prefix}{n}.{domain}``; returns the seconds taken."""
        start = time.monotonic()
        slots = asyncio.Semaphore(max_in_flight)
        credentials = grpc.ssl_channel_credentials(self.ca_pem)
        first = len(self.agents)
        async with grpc.aio.secure_channel(self.registration_address, credentials) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            tasks = [self._register_one(stub, slots, token,
                                        SimulatedMachine(f"{prefix}{n:05d}.{domain}", n))
                     for n in range(first, first + count)]
            self.agents.extend(await asyncio.gather(*tasks))
        return time.monotonic() - start

    async def _register_one(self, stub: agent_pb2_grpc.AgentServiceStub, slots: asyncio.Semaphore,
                            token: str, machine: SimulatedMachine) -> SimulatedAgent:
        key = identity.new_key()
        request = agent_pb2.RegisterRequest(
            protocol_version=PROTOCOL_VERSION, token=token,
            csr_pem=identity.make_csr(key, machine.fqdn), fqdn=machine.fqdn,
            nodename=machine.fqdn.split(".")[0], roles=self.roles, version=__version__,
            inventory=inventory.to_message(machine.inventory()),
            address=machine.inventory()["interfaces"][0]["addresses"][0].split("/")[0])
        async with slots:
            response = await stub.Register(request, timeout=60)
        return SimulatedAgent(machine, Identity(identity.key_pem(key), response.certificate_pem,
                                                self.ca_pem), response.host_id)

    # --- saved identities ----------------------------------------------------------------

    def save(self, path: str) -> None:
        doc = [{"fqdn": a.machine.fqdn, "index": a.machine.index, "host_id": a.host_id,
                "key": a.identity.key_pem.decode(), "cert": a.identity.cert_pem.decode()}
               for a in self.agents]
        write_files({path: json.dumps(doc).encode()})

    def load(self, path: str) -> None:
        with open(path) as f:
            doc = json.load(f)
        self.agents = [SimulatedAgent(SimulatedMachine(d["fqdn"], d["index"]),
                                      Identity(d["key"].encode(), d["cert"].encode(), self.ca_pem),
                                      d["host_id"]) for d in doc]

    # --- connections ---------------------------------------------------------------------

    async def connect(self, wave: int = 200, wave_timeout: float = 20.0) -> float:
        """Start every agent's stream, ``wave`` at a time; returns seconds until all are up
        (or the last wave timed out)."""
        raise_fd_limit(len(self.agents) + 1024)
        registry = Registry.from_modules([diagnostics, host, power, report])
        start = time.monotonic()
        for first in range(0, len(self.agents), wave):
            batch = self.agents[first:first + wave]
            for agent in batch:
                self._start(agent, registry)
            await self.wait_connected(batch, wave_timeout)
        return time.monotonic() - start

    def _start(self, agent: SimulatedAgent, registry: Registry) -> None:
        agent.machine.bmcs = self.bmcs
        agent.runner = ActionRunner(registry, agent.machine, MemoryOutbox(),
                                    self.config.max_actions, label=agent.machine.fqdn)
        agent.connection = AgentConnection(self.agent_address, agent.identity, agent.machine,
                                           self.roles, agent.runner, self.config,
                                           rng=random.Random(agent.machine.index))
        self._tasks.append(asyncio.create_task(agent.connection.run(self._stop)))

    @staticmethod
    async def wait_connected(agents: list[SimulatedAgent], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(a.connection and a.connection.status.connected for a in agents):
                return True
            await asyncio.sleep(0.05)
        return False

    def connected_count(self) -> int:
        return sum(1 for a in self.agents if a.connection and a.connection.status.connected)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(a.runner.close() for a in self.agents if a.runner),
                             return_exceptions=True)


def raise_fd_limit(wanted: int) -> None:
    """One channel per agent is one socket per agent: lift the soft limit toward ``wanted``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open-file limit %d is below the %d this fleet needs", target, wanted)


def saved_path(state_dir: str) -> str:
    return os.path.join(state_dir, "fleet.json")
