"""Power control devices and outlets: what they are, who may change them, and what the BMC
agent needs to reach one outlet.

A device (a BMC or a PDU) is of a power control type, has an address, a port, credentials
and options (NULL: its type's ``default_options``), and up to its type's ``max_outlets``
outlets (0: unlimited). A device's password is stored encrypted (``manager.secrets``) and is
only ever decrypted by ``outlet_targets``, for the agent. An outlet powers a host (IML's
link) and/or a node (``Node.outlet``); its ``has_power`` is written only by the manager
(``record_power``), from what the BMC agents report.

Every function runs on a database thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import peewee

from manager.db.base import is_postgres, utcnow
from manager.db.hosts import Host
from manager.db.inventory import (
    Node,
    PowerControlDevice,
    PowerControlDeviceOutlet,
    PowerControlType,
)
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import Conflict, NotFound, ValidationError
from manager.domain.inventory import checks, power_types
from manager.domain.inventory.lookups import among
from manager.domain.permissions import require_administrator
from manager.secrets import SecretBox, current

F = TypeVar("F", bound=Callable[..., Any])
HAS_POWER = ("On", "Off", "Unknown")
WHAT = "manage power control"

TYPE_CHECKS: dict[str, checks.Check] = {
    "name": checks.text(128, blank=False),
    "agent": checks.text(64, power_types.AGENT_PATTERN, "a fence agent's name, e.g. fence_apc",
                         blank=False),
    "make": checks.text(64, null=True),
    "model": checks.text(64, null=True),
    "max_outlets": checks.integer(0, 100_000),
    "default_port": checks.integer(1, 65535),
    "default_options": power_types.check_options,
    **{name: power_types.check_template for name in power_types.TEMPLATE_FIELDS},
}
DEVICE_CHECKS: dict[str, checks.Check] = {
    "device_type": checks.integer(1, 2**63 - 1),
    "name": checks.text(255),
    "address": checks.text(255, r"[A-Za-z0-9._:/\[\]-]+", "an IP address or a host name",
                           blank=False),
    "port": checks.integer(1, 65535),
    "username": checks.text(64),
    "password": checks.text(256, null=True),
    "options": power_types.check_options,
}
OUTLET_CHECKS: dict[str, checks.Check] = {
    "device": checks.integer(1, 2**63 - 1),
    "identifier": checks.text(255, r"[A-Za-z0-9._:/@-]*",
                              "letters, digits and ._:/@- (an outlet number, a system id)"),
    "host": lambda v: None if v is None else checks.integer(1, 2**63 - 1)(v),
    "node": lambda v: None if v is None else checks.integer(1, 2**63 - 1)(v),
}


class _Generation:
    """Counts changes to which hosts and nodes have outlets, so that a cache of them (the
    power jobs' ``has_outlet``) in this process is never stale after a change made here."""

    def __init__(self) -> None:
        self.value = 0

    def bump(self) -> None:
        self.value += 1


outlet_links = _Generation()


def _transaction(fn: F) -> F:
    """Run ``fn`` as one transaction (a savepoint inside the caller's)."""
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with PowerControlDevice._meta.database.atomic():
            result = fn(*args, **kwargs)
        outlet_links.bump()
        return result
    return run  # type: ignore[return-value]


# --- types ------------------------------------------------------------------------------

@_transaction
def create_type(principal: Principal, values: Mapping[str, Any]) -> int:
    require_administrator(principal, WHAT)
    fields = checks.cleaned_or_raise(values, TYPE_CHECKS)
    if "agent" not in fields:
        raise ValidationError({"agent": "This field is required."})
    fields = {**power_types.default_templates(), "default_port": 23, **fields}
    fields.setdefault("name", power_types.display_name(fields.get("make"), fields.get("model"),
                                                       fields["agent"]))
    return _unique_name(lambda: PowerControlType.create(**fields).id, fields["name"])


@_transaction
def update_type(principal: Principal, type_id: int, values: Mapping[str, Any]) -> None:
    require_administrator(principal, WHAT)
    fields = checks.cleaned_or_raise(values, TYPE_CHECKS)
    if fields.get("max_outlets"):
        busiest = _most_outlets(PowerControlDevice.device_type == type_id)
        if busiest > fields["max_outlets"]:
            raise ValidationError({"max_outlets": f"A device of this type has {busiest} "
                                                  "outlets; remove some first."})
    if fields:
        _unique_name(lambda: PowerControlType.update(fields)
                     .where(PowerControlType.id == type_id).execute(), fields.get("name", ""))


@_transaction
def delete_type(principal: Principal, type_id: int) -> None:
    require_administrator(principal, WHAT)
    used = PowerControlDevice.select().where(PowerControlDevice.device_type == type_id).count()
    if used:
        raise Conflict(f"power control type {type_id} is used by {used} device(s); delete "
                       "or change them first")
    PowerControlType.delete().where(PowerControlType.id == type_id).execute()


def _unique_name(write: Any, name: str) -> Any:
    try:
        with PowerControlType._meta.database.atomic():
            return write()
    except peewee.IntegrityError:
        raise ValidationError({"name": f"A power control type named {name!r} exists."}) from None


def _most_outlets(where: Any) -> int:
    counts = (PowerControlDeviceOutlet.select(peewee.fn.COUNT(PowerControlDeviceOutlet.id))
              .join(PowerControlDevice).where(where).group_by(PowerControlDevice.id))
    return max((c for (c,) in counts.tuples()), default=0)


# --- devices ----------------------------------------------------------------------------

@_transaction
def create_device(principal: Principal, values: Mapping[str, Any], box: SecretBox,
                  outlets: list[Mapping[str, Any]] = ()) -> int:
    """A device, and its first ``outlets`` (each ``{identifier, host, node}``) with it."""
    require_administrator(principal, WHAT)
    fields = checks.cleaned_or_raise(values, DEVICE_CHECKS)
    missing = [n for n in ("device_type", "address") if n not in fields]
    if missing:
        raise ValidationError({n: "This field is required." for n in missing})
    device_type = _type(fields["device_type"])
    fields.setdefault("port", device_type.default_port)
    fields["name"] = fields.get("name") or fields["address"]
    fields["password"] = box.encrypt(fields.get("password") or "")
    device_id = _unique_address(lambda: PowerControlDevice.create(**fields).id, fields)
    for i, outlet in enumerate(outlets):
        try:
            create_outlet(principal, {**outlet, "device": device_id})
        except ValidationError as exc:
            raise ValidationError({"outlets": "; ".join(
                f"outlets[{i}].{k}: {v}" for k, v in exc.errors.items())}) from None
    return device_id


@_transaction
def update_device(principal: Principal, device_id: int, values: Mapping[str, Any],
                  box: SecretBox) -> None:
    """Change a device; a ``password`` key replaces the password (null or "" clears it)."""
    require_administrator(principal, WHAT)
    device = get_device(device_id, lock=True)
    fields = checks.cleaned_or_raise(values, DEVICE_CHECKS)
    if "device_type" in fields and fields["device_type"] != device.device_type_id:
        limit = _type(fields["device_type"]).max_outlets
        count = _outlet_count(device_id)
        if limit and count > limit:
            raise ValidationError({"device_type": f"That type allows {limit} outlet(s); this "
                                                  f"device has {count}."})
    if "password" in fields:
        fields["password"] = box.encrypt(fields["password"] or "")
    if "name" in fields and not fields["name"]:
        fields["name"] = fields.get("address", device.address)
    if fields:
        _unique_address(lambda: PowerControlDevice.update(fields)
                        .where(PowerControlDevice.id == device_id).execute(),
                        {"address": device.address, "port": device.port, **fields})


@_transaction
def delete_device(principal: Principal, device_id: int) -> None:
    """Delete a device and its outlets (nodes keep existing, without an outlet)."""
    require_administrator(principal, WHAT)
    get_device(device_id)
    PowerControlDevice.delete().where(PowerControlDevice.id == device_id).execute()


def get_device(device_id: int, lock: bool = False) -> PowerControlDevice:
    """The device; ``lock`` holds its row until the transaction ends (PostgreSQL), so two
    requests cannot both add its last allowed outlet."""
    query = PowerControlDevice.select().where(PowerControlDevice.id == device_id)
    if lock and is_postgres():
        query = query.for_update()
    device = query.first()
    if device is None:
        raise NotFound(f"power_control_device {device_id} does not exist")
    return device


def _type(type_id: int) -> PowerControlType:
    found = PowerControlType.get_or_none(PowerControlType.id == type_id)
    if found is None:
        raise ValidationError({"device_type": f"No power control type {type_id}."})
    return found


def _unique_address(write: Any, fields: Mapping[str, Any]) -> Any:
    try:
        with PowerControlDevice._meta.database.atomic():
            return write()
    except peewee.IntegrityError:
        raise ValidationError({"address": f"A device at {fields['address']} port "
                                          f"{fields['port']} exists."}) from None


def _outlet_count(device_id: int) -> int:
    return (PowerControlDeviceOutlet.select()
            .where(PowerControlDeviceOutlet.device == device_id).count())


# --- outlets ----------------------------------------------------------------------------

@_transaction
def create_outlet(principal: Principal, values: Mapping[str, Any]) -> int:
    require_administrator(principal, WHAT)
    fields = checks.cleaned_or_raise(values, OUTLET_CHECKS)
    if "device" not in fields:
        raise ValidationError({"device": "This field is required."})
    node = fields.pop("node", None)
    _check_room(fields["device"])
    _check_host(fields.get("host"))
    outlet_id = _unique_identifier(lambda: PowerControlDeviceOutlet.create(**fields).id, fields)
    if node is not None:
        _attach_node(outlet_id, node)
    return outlet_id


@_transaction
def update_outlet(principal: Principal, outlet_id: int, values: Mapping[str, Any]) -> None:
    require_administrator(principal, WHAT)
    outlet = get_outlet(outlet_id)
    fields = checks.cleaned_or_raise(values, OUTLET_CHECKS)
    node = fields.pop("node", ...)
    if fields.get("device", outlet.device_id) != outlet.device_id:
        _check_room(fields["device"])
    _check_host(fields.get("host"))
    if fields:
        _unique_identifier(lambda: PowerControlDeviceOutlet.update(fields)
                           .where(PowerControlDeviceOutlet.id == outlet_id).execute(),
                           {"device": outlet.device_id, "identifier": outlet.identifier,
                            **fields})
    if node is not ...:
        _attach_node(outlet_id, node)


@_transaction
def delete_outlet(principal: Principal, outlet_id: int) -> None:
    require_administrator(principal, WHAT)
    get_outlet(outlet_id)
    PowerControlDeviceOutlet.delete().where(PowerControlDeviceOutlet.id == outlet_id).execute()


def get_outlet(outlet_id: int) -> PowerControlDeviceOutlet:
    outlet = PowerControlDeviceOutlet.get_or_none(PowerControlDeviceOutlet.id == outlet_id)
    if outlet is None:
        raise NotFound(f"power_control_device_outlet {outlet_id} does not exist")
    return outlet


def _check_room(device_id: int) -> None:
    """Refuse another outlet on a device that has its type's ``max_outlets``."""
    try:
        device = get_device(device_id, lock=True)
    except NotFound:
        raise ValidationError({"device": f"No power control device {device_id}."}) from None
    limit = device.device_type.max_outlets
    if limit and _outlet_count(device_id) >= limit:
        raise ValidationError({"device": f"Device {device.name} has its type's maximum of "
                                         f"{limit} outlet(s)."})


def _check_host(host_id: int | None) -> None:
    if host_id is not None and not (Host.select().where(Host.id == host_id,
                                                        Host.state != hosts.REMOVED).exists()):
        raise ValidationError({"host": f"No host {host_id}."})


def _attach_node(outlet_id: int, node_id: int | None) -> None:
    """Make ``node_id`` the node this outlet powers (None: no node); a node has one outlet."""
    if node_id is not None and not Node.select().where(Node.id == node_id).exists():
        raise ValidationError({"node": f"No node {node_id}."})
    Node.update(outlet=None, modified_at=utcnow()).where(Node.outlet == outlet_id).execute()
    if node_id is not None:
        Node.update(outlet=outlet_id, modified_at=utcnow()).where(Node.id == node_id).execute()


def _unique_identifier(write: Any, fields: Mapping[str, Any]) -> Any:
    try:
        with PowerControlDeviceOutlet._meta.database.atomic():
            return write()
    except peewee.IntegrityError:
        raise ValidationError({"identifier": f"The device already has an outlet "
                                             f"{fields['identifier']!r}."}) from None


# --- for the engine: reaching outlets and recording their state --------------------------

def outlet_targets(outlet_ids: Iterable[int], box: SecretBox | None = None) -> list[dict]:
    """What the BMC agent's power actions take for each outlet (its ``outlets`` items):
    ``{id, driver, address, port, username, password, identifier, options, fence_agent}``,
    the password decrypted. In the order asked; ids of outlets that no longer exist are left
    out. Reads only the database; raises ``SecretUnreadable`` if the key file changed."""
    box = box or current()
    ids = list(dict.fromkeys(outlet_ids))
    if not ids:
        return []
    query = (PowerControlDeviceOutlet
             .select(PowerControlDeviceOutlet.id, PowerControlDeviceOutlet.identifier,
                     PowerControlDevice.address, PowerControlDevice.port,
                     PowerControlDevice.username, PowerControlDevice.password,
                     PowerControlDevice.options, PowerControlType.agent,
                     PowerControlType.default_options)
             .join(PowerControlDevice).join(PowerControlType)
             .where(among(PowerControlDeviceOutlet.id, ids)).tuples())
    found = {}
    for (outlet_id, identifier, address, port, username, password, options, agent,
         default_options) in query:
        found[outlet_id] = {
            "id": outlet_id, "driver": power_types.driver_for(agent), "address": address,
            "port": port, "username": username, "password": box.decrypt(password),
            "identifier": identifier,
            "options": (default_options if options is None else options) or "",
            "fence_agent": agent}
    return [found[i] for i in ids if i in found]


def record_power(states: Mapping[int, str]) -> int:
    """Store polled outlet states (``{outlet_id: "On"|"Off"|"Unknown"}``): one statement per
    state for any number of outlets, in one transaction; returns how many outlets exist of
    those given (ids of deleted outlets are ignored)."""
    bad = sorted({s for s in states.values() if s not in HAS_POWER})
    if bad:
        raise ValueError(f"not a power state: {bad[0]!r} (one of {', '.join(HAS_POWER)})")
    by_state: dict[str, list[int]] = {}
    for outlet_id, state in states.items():
        by_state.setdefault(state, []).append(outlet_id)
    now, updated = utcnow(), 0
    with PowerControlDeviceOutlet._meta.database.atomic():
        for state, ids in sorted(by_state.items()):
            updated += (PowerControlDeviceOutlet.update(has_power=state, power_checked_at=now)
                        .where(among(PowerControlDeviceOutlet.id, ids)).execute())
    return updated
