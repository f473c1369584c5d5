"""Power on, off and cycle of hosts and nodes through the engine, and the outlet sweep.

A power job has two steps: the power action (``power.on``, ``power.off``, ``power.cycle``)
on the BMC agent that controls the outlets' device, then recording the state each outlet
reported. It takes a write lock on its host or node, so a power-off waits for the jobs
already running on a server and a set-up waits for a power-cycle (IML's behaviour).

A device is controlled by a BMC agent: a registered host with the ``bmc`` role. Devices are
spread over the BMC agents by id, so that adding agents shares the sweep; a job whose
outlets span several devices runs on the controller of the first.

Every function runs on a database thread.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from manager.db.hosts import Host
from manager.db.inventory import Node, PowerControlDevice, PowerControlDeviceOutlet
from manager.domain import alerts, hosts
from manager.domain.inventory.lookups import among
from manager.domain.inventory.power import outlet_links, outlet_targets, record_power
from manager.engine.registry import (
    JobClass,
    Registry,
    StatefulClass,
    StepFailed,
    StepSpec,
)
from manager.engine.registry import default as default_registry
from manager.engine.statemachine import StateMachine

NODE_CONTENT_TYPE_ID = 70
UNAVAILABLE = "PowerControlDeviceUnavailableAlert"
STEP_TIMEOUT = 30.0             # seconds per outlet (the agent's ``timeout``)
GRACEFUL_TIMEOUT = 60.0         # seconds a graceful shutdown may take before it is forced
OPERATIONS = {"on": ("power.on", "Power On", "Poweron"),
              "off": ("power.off", "Power Off", "Poweroff"),
              "cycle": ("power.cycle", "Power Cycle", "Powercycle")}
AVAILABLE_TTL = 2.0             # seconds the set of objects with outlets is reused

# Nodes have no lifecycle of their own (yet): one state, so that jobs can lock them.
NODE_MACHINE = StateMachine(name="node", initial="present", transitions=())


class NoController(StepFailed):
    pass


# --- which agent reaches which device -----------------------------------------------------

def controllers() -> list[int]:
    """The ids of the hosts that can run power actions: BMC agents not removed."""
    return [i for (i,) in Host.select(Host.id)
            .where(Host.roles.contains(",bmc,"), Host.state != hosts.REMOVED)
            .order_by(Host.id).tuples()]


def controller_of(device_id: int, among_hosts: list[int]) -> int:
    if not among_hosts:
        raise NoController("no BMC agent is registered to reach the power control device "
                           "(register an agent with the bmc role)")
    return among_hosts[device_id % len(among_hosts)]


def sweep_plan() -> dict[int, list[int]]:
    """Every outlet, grouped by the BMC agent that reaches it: ``{host_id: [outlet ids]}``
    (empty when no BMC agent is registered)."""
    agents = controllers()
    if not agents:
        return {}
    plan: dict[int, list[int]] = defaultdict(list)
    query = (PowerControlDeviceOutlet.select(PowerControlDeviceOutlet.id,
                                             PowerControlDeviceOutlet.device)
             .order_by(PowerControlDeviceOutlet.id).tuples())
    for outlet_id, device_id in query.iterator():
        plan[controller_of(device_id, agents)].append(outlet_id)
    return dict(plan)


def record_sweep(entries: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Store what a ``power.status`` (or a switch) reported per outlet, and keep one
    ``PowerControlDeviceUnavailableAlert`` per device that failed to answer for all its
    outlets asked (ended when it answers again). Returns counts by outcome."""
    entries = list(entries)
    states = {e["id"]: ("On" if e.get("power") == "on" else "Off" if e.get("power") == "off"
                        else "Unknown") for e in entries}
    record_power(states)
    devices = dict(PowerControlDeviceOutlet
                   .select(PowerControlDeviceOutlet.id, PowerControlDeviceOutlet.device)
                   .where(among(PowerControlDeviceOutlet.id, list(states))).tuples())
    answered: dict[int, bool] = {}
    error_of: dict[int, str] = {}
    for entry in entries:
        device = devices.get(entry["id"])
        if device is None:
            continue
        answered[device] = answered.get(device, False) or bool(entry.get("ok"))
        if not entry.get("ok"):
            error_of.setdefault(device, entry.get("error") or "no answer")
    names = dict(PowerControlDevice.select(PowerControlDevice.id, PowerControlDevice.name)
                 .where(among(PowerControlDevice.id, list(answered))).tuples())
    for device, ok in answered.items():
        if ok:
            alerts.end_alert(UNAVAILABLE, "power_control_device", device)
        else:
            alerts.raise_alert(UNAVAILABLE, alerts.ERROR,
                               f"Unable to monitor power control device {names.get(device)}: "
                               f"{error_of[device]}", "power_control_device", device,
                               names.get(device) or "")
    return {"ok": sum(1 for e in entries if e.get("ok")),
            "failed": sum(1 for e in entries if not e.get("ok"))}


# --- the jobs ------------------------------------------------------------------------------

def outlets_of(object_type: str, object_id: int) -> list[int]:
    if object_type == "host":
        return [i for (i,) in PowerControlDeviceOutlet.select(PowerControlDeviceOutlet.id)
                .where(PowerControlDeviceOutlet.host == object_id)
                .order_by(PowerControlDeviceOutlet.id).tuples()]
    return [i for (i,) in Node.select(Node.outlet).where(Node.id == object_id,
                                                          Node.outlet.is_null(False)).tuples()]


class _WithOutlets:
    """Which hosts and nodes have an outlet, for ``available_jobs`` of a whole page: one
    query per class instead of one per row, repeated after any change of outlet links made
    in this process and every ``AVAILABLE_TTL`` seconds (changes made by another manager)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, int, frozenset[int]]] = {}

    def __call__(self, object_type: str, object_id: int) -> bool:
        at, generation, ids = self._cache.get(object_type, (0.0, -1, frozenset()))
        if time.monotonic() - at > AVAILABLE_TTL or generation != outlet_links.value:
            generation = outlet_links.value
            ids = frozenset(self._query(object_type))
            self._cache[object_type] = (time.monotonic(), generation, ids)
        return object_id in ids

    @staticmethod
    def _query(object_type: str) -> Iterable[int]:
        if object_type == "host":
            return (i for (i,) in PowerControlDeviceOutlet.select(PowerControlDeviceOutlet.host)
                    .where(PowerControlDeviceOutlet.host.is_null(False)).tuples())
        return (i for (i,) in Node.select(Node.id).where(Node.outlet.is_null(False)).tuples())


has_outlet = _WithOutlets()


def _power_step(object_type: str, operation: str) -> StepSpec:
    action, verb, _ = OPERATIONS[operation]
    id_arg = f"{object_type}_id"

    def step_args(job_args: dict[str, Any]) -> dict[str, Any]:
        outlets = outlet_targets(outlets_of(object_type, job_args[id_arg]))
        if not outlets:
            raise StepFailed(f"the {object_type} has no power outlet")
        args = {"outlets": outlets, "timeout": STEP_TIMEOUT}
        if operation == "off":
            args["graceful_timeout"] = GRACEFUL_TIMEOUT
        return args

    def controller(job_args: dict[str, Any]) -> int:
        first = outlets_of(object_type, job_args[id_arg])[:1]
        if not first:
            raise StepFailed(f"the {object_type} has no power outlet")
        outlet = PowerControlDeviceOutlet.get_or_none(PowerControlDeviceOutlet.id == first[0])
        if outlet is None:
            raise StepFailed(f"the {object_type}'s power outlet was deleted")
        return controller_of(outlet.device_id, controllers())

    timeout = STEP_TIMEOUT * 2 + (GRACEFUL_TIMEOUT if operation == "off" else 0)
    return StepSpec(f"{verb.replace(' ', '')}Step", f"{verb} through the power control device",
                    action=action, args=step_args, host=controller, timeout=timeout,
                    secret_args=("outlets",))


def _record(job_args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    entries = (results[-1] or {}).get("outlets", []) if results else []
    counts = record_sweep(entries)
    failed = [e for e in entries if not e.get("ok")]
    if failed:
        raise StepFailed("; ".join(e.get("error") or "failed" for e in failed))
    return counts


def _power_job(object_type: str, operation: str) -> JobClass:
    _, verb, prefix = OPERATIONS[operation]
    noun = "Host" if object_type == "host" else "Node"
    steps = [_power_step(object_type, operation),
             StepSpec("RecordPowerStateStep", "Record the outlets' power state",
                      function=_record)]
    return JobClass(
        f"{prefix}{noun}Job", object_type, f"{verb} {object_type} {{label}}",
        steps=lambda args: list(steps), verb=verb,
        display_order=60 + list(OPERATIONS).index(operation),
        long_description=f"{verb} this {object_type} through its power control device.",
        confirmation=None if operation == "on" else
        f"The {object_type} loses power without a chance to finish what it is doing"
        if operation == "cycle" else None,
        # a disabled node is left out of boots and power actions
        available=lambda row: getattr(row, "enabled", True) and has_outlet(object_type, row.id))


def _node_states(ids: list[int]) -> dict[int, str]:
    return {i: "present" for (i,) in Node.select(Node.id).where(among(Node.id, ids)).tuples()}


def _node_labels(ids: list[int]) -> dict[int, str]:
    return {i: xname or hostname or f"node {i}" for i, xname, hostname in
            Node.select(Node.id, Node.xname, Node.hostname).where(among(Node.id, ids)).tuples()}


def register_with(registry: Registry) -> None:
    registry.add_class(StatefulClass("node", NODE_CONTENT_TYPE_ID, NODE_MACHINE, _node_states,
                                     lambda node_id, state: None, _node_labels,
                                     lambda node_id: Node.get_or_none(Node.id == node_id),
                                     "node_id",
                                     lambda ids: {n.id: n for n in
                                                  Node.select().where(among(Node.id, ids))}))
    for object_type in ("host", "node"):
        for operation in OPERATIONS:
            registry.add_job(_power_job(object_type, operation))


register_with(default_registry)
