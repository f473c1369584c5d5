"""The simulated hardware behind a simulated agent: what its inventory reports, what the
``host.validate`` checks find and which BMCs its power actions reach, answered from fields
(no real I/O, so that 10,000 simulated agents in one process stay cheap)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from agent.power import PowerDriver
from agent.simulator.bmc import SimulatedBmcs
from protos import agent_pb2


class MemoryOutbox:
    """The outbox of a simulated agent: the same contract as ``agent.state.Outbox``, kept in
    memory (10,000 agents writing files per result would measure the disk, not the manager)."""

    in_memory = True  # the runner calls it directly instead of through a worker thread

    def __init__(self) -> None:
        self._results: dict[str, agent_pb2.ActionResult] = {}

    def ids(self) -> set[str]:
        return set(self._results)

    def put(self, result: agent_pb2.ActionResult) -> None:
        self._results[result.action_id] = result

    def get(self, action_id: str) -> agent_pb2.ActionResult | None:
        return self._results.get(action_id)

    def delete(self, action_id: str) -> None:
        self._results.pop(action_id, None)

    def all(self) -> list[agent_pb2.ActionResult]:
        return [self._results[i] for i in sorted(self._results)]


@dataclasses.dataclass
class SimulatedMachine:
    """One simulated node: a fixed hardware description numbered by ``index``.

    By default it has every command, kernel module and device asked for; ``missing`` names
    the ones it lacks. ``clock_offset`` skews its clock (seconds) and ``clock_synchronized``
    is what it says of NTP. ``bmcs`` are the simulated BMCs its power actions reach (a
    fleet shares one; a lone machine gets its own on first use).
    """

    fqdn: str
    index: int
    cpu_count: int = 64
    memory_bytes: int = 256 * 2**30
    disks: int = 2
    boot_time: int = dataclasses.field(default_factory=lambda: int(time.time()) - 3600)
    missing: frozenset[str] = frozenset()
    clock_offset: float = 0.0
    clock_synchronized: bool | None = True
    bmcs: SimulatedBmcs | None = None

    def inventory(self) -> dict[str, Any]:
        octets = f"{(self.index >> 8) & 0xFF}.{self.index & 0xFF}"
        return {
            "fqdn": self.fqdn, "nodename": self.fqdn.split(".")[0], "boot_time": self.boot_time,
            "cpu_count": self.cpu_count, "memory_bytes": self.memory_bytes,
            "architecture": "x86_64", "kernel": "simulated",
            "block_devices": [{"name": f"sd{chr(97 + d)}", "size_bytes": 4 * 10**12,
                               "serial": f"SIM{self.index:06d}{d}", "model": "Simulated Disk",
                               "rotational": True} for d in range(self.disks)],
            "interfaces": [{"name": "eth0", "mac_address": _mac(self.index),
                            "addresses": [f"10.200.{octets}/16"], "up": True, "mtu": 9000}],
        }

    def has_command(self, name: str) -> bool:
        return name not in self.missing

    async def kernel_module_state(self, name: str, timeout: float | None) -> str:
        return "absent" if name in self.missing else "loaded"

    def has_device(self, path: str) -> bool:
        return path not in self.missing

    def ntp_synchronized(self) -> bool | None:
        return self.clock_synchronized

    def now(self) -> float:
        return time.time() + self.clock_offset

    @property
    def power_drivers(self) -> dict[str, PowerDriver]:
        """Stand-ins for the real power drivers (see ``agent.actions.power``)."""
        if self.bmcs is None:
            self.bmcs = SimulatedBmcs()
        return self.bmcs.power_drivers


def _mac(index: int) -> str:
    return "02:5e:" + ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))
