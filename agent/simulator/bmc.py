"""Simulated BMCs: every outlet's power state in a dict, so that simulated BMC agents can
drive 10,000 nodes' power without a socket or a thread per node.

A ``SimulatedBmcs`` stands in for all three drivers (``ipmi``, ``redfish``, ``fence``): the
power actions run unchanged (``agent.power.control`` reads first, switches, reads back), only
the device at the end of the line is simulated. A node's power belongs to the node, not to
the agent that switches it, so one ``SimulatedBmcs`` is shared by a whole fleet.

Misbehaviour is set per address in ``faults``: ``"unreachable"`` (never answers: the
outlet's time runs out), ``"auth"`` (refuses every credential) or ``"lying"`` (acknowledges
every switch and changes nothing).
"""

from __future__ import annotations

import asyncio

from agent.power import AuthenticationFailed, Connection, Limits, Outlet, PowerDriver

FAULTS = ("unreachable", "auth", "lying")


class SimulatedBmcs:
    """The power state of every outlet, keyed by (driver, address, port, identifier);
    an outlet not seen before is ``initial``. ``latency`` seconds pass per exchange."""

    def __init__(self, initial: str = "off", latency: float = 0.0) -> None:
        self.initial = initial
        self.latency = latency
        self.states: dict[tuple[str, str, int | None, str], str] = {}
        self.faults: dict[str, str] = {}
        self.power_drivers: dict[str, PowerDriver] = {
            name: SimulatedDriver(self, name, port, graceful=name != "fence")
            for name, port in (("ipmi", 623), ("redfish", 443), ("fence", None))}

    def power(self, driver: str, address: str, port: int | None = None,
              identifier: str = "") -> str:
        """An outlet's simulated state, as a test or a benchmark would check it."""
        default = self.power_drivers[driver].default_port
        return self.states.get((driver, address, port or default, identifier), self.initial)


class SimulatedDriver(PowerDriver):
    """One protocol's name and defaults, over the shared simulated states."""

    def __init__(self, bmcs: SimulatedBmcs, name: str, default_port: int | None,
                 graceful: bool) -> None:
        self.bmcs = bmcs
        self.name = name                    # type: ignore[misc]
        self.default_port = default_port    # type: ignore[misc]
        self.graceful = graceful            # fence agents have no graceful shutdown

    def device(self, outlet: Outlet) -> str:
        return outlet.fence_agent if self.name == "fence" and outlet.fence_agent else "BMC"

    async def connect(self, outlet: Outlet, limits: Limits) -> Connection:
        fault = self.bmcs.faults.get(outlet.address)
        await self._exchange(fault)
        if fault == "auth":
            raise AuthenticationFailed()
        key = (self.name, outlet.address, outlet.port or self.default_port, outlet.identifier)
        return SimulatedConnection(self, key, lying=fault == "lying")

    async def _exchange(self, fault: str | None) -> None:
        if fault == "unreachable":
            await asyncio.Event().wait()    # until the caller's deadline cancels it
        if self.bmcs.latency:
            await asyncio.sleep(self.bmcs.latency)


class SimulatedConnection(Connection):
    def __init__(self, driver: SimulatedDriver, key: tuple, lying: bool) -> None:
        self.driver, self.key, self.lying = driver, key, lying

    async def query(self) -> str:
        await self.driver._exchange(None)
        return self.driver.bmcs.states.get(self.key, self.driver.bmcs.initial)

    async def on(self) -> None:
        await self._set("on")

    async def off(self) -> None:
        await self._set("off")

    async def soft_off(self) -> None:
        if not self.driver.graceful:
            await super().soft_off()
        await self._set("off")          # the simulated OS shuts down at once

    async def reset(self) -> None:
        await self.driver._exchange(None)

    async def _set(self, state: str) -> None:
        await self.driver._exchange(None)
        if not self.lying:
            self.driver.bmcs.states[self.key] = state
