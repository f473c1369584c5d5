"""The host lifecycle on the engine: set up after registration, remove, force remove.

A host registers in ``unconfigured``; in the same transaction a command "Set up host X"
takes it to its profile's state (``managed``, ``monitored`` or ``working``): the agent
validates the machine against its roles' requirements (commands, kernel modules, devices)
and reports its clock, which must agree with the manager's; then it reports its inventory
and the manager records it with the agent's version. Removal revokes the certificate.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from manager.db.base import utcnow
from manager.db.hosts import Action, Host
from manager.domain import hosts
from manager.domain.inventory import nodes
from manager.domain.inventory.lookups import among
from manager.engine import commands
from manager.engine.registry import (
    JobClass,
    Registry,
    StatefulClass,
    StepFailed,
    StepSpec,
)
from manager.engine.registry import default as default_registry
from manager.engine.statemachine import StateMachine, Transition

HOST_CONTENT_TYPE_ID = 6
MAX_CLOCK_SKEW = datetime.timedelta(seconds=5)

# What each role needs on the machine. Lustre tools and modules join the storage role with
# the Lustre capability; until then a storage server needs only what LNet setup will use.
ROLE_REQUIREMENTS: dict[str, dict[str, list[str]]] = {
    "storage": {"commands": ["ip", "mount"]},
    "bmc": {"commands": ["ip"]},
    "image-builder": {"commands": ["ip", "mount"]},
    "compute": {"commands": ["ip", "mount"]},
}

# IML 4.x's host lifecycle (iml-notes §1). Shepherd installs agents itself (the RPM, over
# SSH or by the register command), so IML's "undeployed" state and its DeployHostJob have
# no counterpart; the LNet states join with the Lustre capability.
HOST_MACHINE = StateMachine(
    name="host",
    initial="unconfigured",
    transitions=(
        Transition(("unconfigured",), "InstallHostPackagesJob", "packages_installed",
                   "Continue Server Configuration"),
        Transition(("packages_installed",), "SetupHostJob", "managed", "Setup managed server"),
        Transition(("packages_installed",), "SetupMonitoredHostJob", "monitored",
                   "Setup monitored server"),
        Transition(("packages_installed",), "SetupWorkerJob", "working", "Setup worker node"),
        Transition(("unconfigured", "packages_installed", "monitored"),
                   "RemoveUnconfiguredHostJob", "removed", "Remove"),
        Transition(("managed", "working"), "RemoveManagedHostJob", "removed", "Remove"),
    ),
    immutable_states=("removed",),
)


# --- the stateful class ------------------------------------------------------------------

def _states(ids: list[int]) -> dict[int, str]:
    rows = Host.select(Host.id, Host.state).where(Host.id.in_(ids)).tuples()
    return dict(rows)


def _remove(host_id: int) -> None:
    """Revoke and mark removed; its nodes stay in the inventory, without it."""
    hosts.mark_removed(host_id)
    nodes.unlink_host(host_id)


def _set_state(host_id: int, state: str) -> None:
    if state == hosts.REMOVED:
        _remove(host_id)
    else:
        Host.update(state=state, state_modified_at=utcnow()).where(Host.id == host_id).execute()


def _labels(ids: list[int]) -> dict[int, str]:
    return dict(Host.select(Host.id, Host.fqdn).where(Host.id.in_(ids)).tuples())


def _load(host_id: int) -> Host | None:
    return Host.get_or_none(Host.id == host_id)


def _load_many(host_ids: list[int]) -> dict[int, Host]:
    return {h.id: h for h in Host.select().where(among(Host.id, host_ids))}


# --- steps -------------------------------------------------------------------------------

def requirements_for(host_id: int) -> dict[str, list[str]]:
    host = Host.get_by_id(host_id)
    merged: dict[str, set[str]] = {"commands": set(), "kernel_modules": set(), "devices": set()}
    for role in hosts.host_roles(host):
        for kind, names in ROLE_REQUIREMENTS.get(role, {}).items():
            merged[kind] |= set(names)
    return {kind: sorted(names) for kind, names in merged.items() if names}


def _validate_args(args: dict[str, Any]) -> dict[str, Any]:
    return requirements_for(args["host_id"])


def _check_clock(args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    """The agent's clock must agree with the manager's: certificates, leases and logs
    compare times across machines. The agent read its clock after the manager sent the
    validation and before the manager stored its answer; outside that window (widened by
    the tolerance) the clocks disagree, however busy the manager was meanwhile."""
    report = results[-1] or {}
    agent_time = report.get("time")
    if isinstance(agent_time, bool) or not isinstance(agent_time, (int, float)):
        raise StepFailed("the agent did not report its clock")
    sent, answered = (Action.select(Action.created_at, Action.finished_at)
                      .where(Action.host == args["host_id"], Action.name == "host.validate",
                             Action.state == "succeeded")
                      .order_by(Action.created_at.desc()).tuples().first())
    low = _epoch(sent) - MAX_CLOCK_SKEW.total_seconds()
    high = _epoch(answered) + MAX_CLOCK_SKEW.total_seconds()
    if not low <= agent_time <= high:
        ahead = agent_time > high
        off = agent_time - high if ahead else low - agent_time
        raise StepFailed(f"the host's clock is at least {off:.1f} s "
                         f"{'ahead of' if ahead else 'behind'} the manager's; synchronise it "
                         "(chrony/NTP) and set the host up again")
    midpoint = (_epoch(sent) + _epoch(answered)) / 2
    return {"skew_seconds": round(agent_time - midpoint, 3),
            "ntp_synchronized": report.get("ntp_synchronized")}


def _epoch(when: datetime.datetime) -> float:
    return when.replace(tzinfo=datetime.UTC).timestamp()


def _record_inventory(args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    inventory = results[-1] or {}
    changes: dict[Any, Any] = {Host.inventory: json.dumps(inventory)}
    boot_time = hosts.boot_time_of(inventory)
    if boot_time is not None:
        changes[Host.boot_time] = boot_time
    Host.update(changes).where(Host.id == args["host_id"]).execute()
    host = Host.get_by_id(args["host_id"])
    return {"agent_version": host.agent_version, "inventory_keys": sorted(inventory)}


def _revoke(args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    _remove(args["host_id"])
    return {"certificate_revoked": True}


VALIDATE = (
    StepSpec("ValidateHostStep", "Check the machine against its roles' requirements",
             action="host.validate", args=_validate_args, timeout=120),
    StepSpec("CheckClockStep", "Check the host's clock against the manager's",
             function=_check_clock),
)
INVENTORY = (
    StepSpec("ReportInventoryStep", "Read the host's inventory", action="report.inventory",
             timeout=120),
    StepSpec("RecordInventoryStep", "Record the inventory and the agent's version",
             function=_record_inventory),
)
REMOVE = (StepSpec("RevokeHostStep", "Revoke the host's certificate and close its stream",
                   function=_revoke),)


def _setup_job(name: str, what: str) -> JobClass:
    return JobClass(name, "host", f"Set up {what} {{label}}", steps=lambda args: list(INVENTORY))


def register_with(registry: Registry) -> None:
    """Declare the host class and its jobs to ``registry``."""
    registry.add_class(StatefulClass("host", HOST_CONTENT_TYPE_ID, HOST_MACHINE, _states,
                                     _set_state, _labels, _load, "host_id", _load_many))
    registry.add_job(JobClass("InstallHostPackagesJob", "host", "Validate host {label}",
                              steps=lambda args: list(VALIDATE)))
    registry.add_job(_setup_job("SetupHostJob", "managed server"))
    registry.add_job(_setup_job("SetupMonitoredHostJob", "monitored server"))
    registry.add_job(_setup_job("SetupWorkerJob", "worker node"))
    for name in ("RemoveUnconfiguredHostJob", "RemoveManagedHostJob"):
        registry.add_job(JobClass(name, "host", "Remove host {label}", steps=lambda a: list(REMOVE)))
    registry.add_job(JobClass(
        "ForceRemoveHostJob", "host", "Force remove host {label}", steps=lambda a: list(REMOVE),
        verb="Force Remove", display_order=120, sets_state=hosts.REMOVED,
        long_description="Remove this host from Shepherd at once, without waiting for its "
                         "running jobs; its certificate is revoked.",
        confirmation="The host's agent is cut off and its running jobs are abandoned. "
                     "Nothing on the machine itself is changed.",
        available=lambda host: host.state != hosts.REMOVED, cancellable=False, preempts=True))


register_with(default_registry)


# --- registration --------------------------------------------------------------------------

def register(reg: hosts.Registration, sign: hosts.Signer,
             registry: Registry = default_registry) -> tuple[Host, int]:
    """Register the host (in ``unconfigured``) and plan its set-up to its profile's state,
    in one transaction: a host never exists without the command that sets it up. A compute
    host gets its node in the inventory at the same time."""
    database = Host._meta.database
    with database.atomic():
        host = hosts.register(reg, sign, initial_state=HOST_MACHINE.initial)
        nodes.attach_registered_host(host)
        commands.serialize_planning(database)
        planned = commands.plan_state_change(registry, ("host", host.id),
                                             host.server_profile.initial_state)
        planned.message = f"Set up host {host.fqdn}"
        # the set-up is on behalf of whoever created the token the host registered with
        command_id = commands.store(registry, planned, host.token.created_by)
    return host, command_id

