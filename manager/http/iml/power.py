"""``/api/power_control_type/``, ``/api/power_control_device/`` and
``/api/power_control_device_outlet/`` (iml-api.md).

A device's ``password`` is accepted on POST and PUT and never rendered. Its ``outlets`` are
rendered nested; a POST may create the first ones with it (``[{"identifier", "host",
"node"}]``), later changes go through the outlet resource. An outlet's ``has_power`` is the
manager's to set (from what the BMC agents report): it is read-only here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import peewee

from manager.db.inventory import (
    Node,
    PowerControlDevice,
    PowerControlDeviceOutlet,
    PowerControlType,
)
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.inventory import nodes, power, power_types
from manager.domain.permissions import require_administrator
from manager.http.iml.inventory import related_fields
from manager.http.iml.resource import Field, Resource, iso
from manager.secrets import SecretBox

_ID_HELP = "Integer record identifier, unique for objects of this type"
_NEW_OUTLET_FIELDS = ("identifier", "host", "node")
_NEW_OUTLETS_ERROR = ("Must be a list of outlets to create, "
                      "[{\"identifier\", \"host\", \"node\"}].")
_TEMPLATE_HELP = {
    "monitor_template": "Command template for checking that a PDU is responding",
    "outlet_list_template": "Command template for listing all outlets on a PDU (May be null)",
    "outlet_query_template": "Command template for querying an individual outlet's state",
    "powercycle_template": "Command template for cycling an outlet",
    "poweroff_template": "Command template for switching an outlet off",
    "poweron_template": "Command template for switching an outlet on",
}


def _writable(resource: Resource, principal: Principal,
              body: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``body`` a client may set; read-only ones are ignored (IML's way, so
    that a GET, edited, can be PUT back) and unknown ones refused. Only administrators get
    this far."""
    require_administrator(principal, power.WHAT)
    resource.check_fields(body)
    return {k: v for k, v in body.items() if not resource.fields[k].readonly}


class PowerControlTypeResource(Resource):
    name = "power_control_type"
    model = PowerControlType
    description = "A type (make/model, etc.) of power control device"
    fields: ClassVar[dict[str, Field]] = {
        "agent": Field("string", "Fencing agent (e.g. fence_apc, fence_ipmilan, etc.)",
                       readonly=False, required=True),
        "default_options": Field("string", "Default set of options to be passed when invoking "
                                 "fence agent (May be null)", readonly=False, nullable=True),
        "default_port": Field("integer", "Network port used to access power control device",
                              readonly=False, default=23),
        "driver": Field("string", "How the BMC agent speaks to devices of this type: ipmi "
                        "(fence_ipmilan), redfish (fence_redfish) or fence (any other fence "
                        "agent, run as a program) (Shepherd)"),
        "id": Field("integer", _ID_HELP, unique=True),
        "make": Field("string", "Device manufacturer string (May be null)", readonly=False,
                      nullable=True),
        "max_outlets": Field("integer", "The maximum number of outlets which may be associated "
                             "with an instance of this device type (0 is unlimited)",
                             readonly=False, default=0),
        "model": Field("string", "Device model string (May be null)", readonly=False,
                       nullable=True),
        "name": Field("string", "Unicode string data. Ex: \"Hello World\"", readonly=False,
                      unique=True),
        **{name: Field("string", text + "; placeholders {agent} {address} {port} {username} "
                       "{identifier} {options}, never the password", readonly=False,
                       nullable=name == "outlet_list_template")
           for name, text in _TEMPLATE_HELP.items()},
        "resource_uri": Field("string", "URL for this object"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {"make": ("exact",), "name": ("exact",)}
    ordering = ("name", "make", "model")
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PUT", "DELETE")

    def serialize(self, objects: list[PowerControlType], principal: Principal | None) -> list[dict]:
        return [self.render(t) for t in objects]

    @classmethod
    def render(cls, t: PowerControlType) -> dict[str, Any]:
        doc = {name: getattr(t, name) for name in (
            "agent", "default_options", "default_port", "id", "make", "max_outlets", "model",
            "name", *power_types.TEMPLATE_FIELDS)}
        return {**doc, "driver": power_types.driver_for(t.agent), "resource_uri": cls.uri(t.id)}

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        type_id = power.create_type(principal, _writable(self, principal, body))
        return 201, self.detail(principal, str(type_id))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        values = _writable(self, principal, body)
        power.update_type(principal, self.get_object(principal, obj_id).id, values)
        return 200, self.detail(principal, obj_id)

    def delete(self, principal: Principal, obj_id: str) -> None:
        power.delete_type(principal, self.get_object(principal, obj_id).id)


class PowerControlDeviceOutletResource(Resource):
    name = "power_control_device_outlet"
    model = PowerControlDeviceOutlet
    description = ("An outlet (individual host power control entity) associated with a Power "
                   "Control Device.")
    fields: ClassVar[dict[str, Field]] = {
        "device": Field("related", "A single related resource. Can be either a URI or set of "
                        "nested resource data.", readonly=False, to="power_control_device",
                        required=True),
        "has_power": Field("string", "Outlet power status (On, Off, Unknown) (May be null); "
                           "kept current by the manager", nullable=True,
                           choices=power.HAS_POWER),
        "host": Field("related", "A single related resource. Can be either a URI or set of "
                      "nested resource data. (May be null)", readonly=False, nullable=True,
                      to="host"),
        "id": Field("integer", _ID_HELP, unique=True),
        "identifier": Field("string", "A string by which the associated device can identify "
                            "the controlled resource (e.g. PDU outlet number, libvirt domain "
                            "name, ipmi mgmt address, etc.)", readonly=False, blank=True),
        "node": Field("related", "The node the outlet switches (Shepherd; May be null)",
                      readonly=False, nullable=True, to="node"),
        "power_checked_at": Field("datetime", "When has_power was last read from the device "
                                  "(Shepherd; May be null)", nullable=True),
        "resource_uri": Field("string", "URL for this object"),
    }
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PUT", "DELETE", "PATCH")

    def serialize(self, objects: list[PowerControlDeviceOutlet],
                  principal: Principal | None) -> list[dict]:
        return render_outlets(objects)

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        outlet_id = power.create_outlet(principal, _outlet_values(self, principal, body))
        return 201, self.detail(principal, str(outlet_id))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        values = _outlet_values(self, principal, body)
        outlet = self.get_object(principal, obj_id)
        if body.get("has_power", outlet.has_power) != outlet.has_power:
            raise ValidationError({"has_power": "Read-only: the manager records the outlet's "
                                                "power state from its device."})
        power.update_outlet(principal, outlet.id, values)
        return 200, self.detail(principal, obj_id)

    def delete(self, principal: Principal, obj_id: str) -> None:
        power.delete_outlet(principal, self.get_object(principal, obj_id).id)


def _outlet_values(resource: Resource, principal: Principal,
                   body: dict[str, Any]) -> dict[str, Any]:
    values = _writable(resource, principal, body)
    errors = related_fields(values, {"device": "power_control_device", "host": "host",
                                     "node": "node"})
    if errors:
        raise ValidationError(errors)
    return values


def render_outlets(outlets: list[PowerControlDeviceOutlet]) -> list[dict]:
    """Outlets as the outlet resource renders them (also nested in their device)."""
    ids = [o.id for o in outlets]
    node_of = dict(Node.select(Node.outlet, Node.id).where(Node.outlet.in_(ids)).tuples()) \
        if ids else {}
    live = nodes.live_hosts([o.host_id for o in outlets if o.host_id is not None])
    return [{
        "device": PowerControlDeviceResource.uri(o.device_id), "has_power": o.has_power,
        "host": f"/api/host/{o.host_id}/" if o.host_id in live else None, "id": o.id,
        "identifier": o.identifier,
        "node": f"/api/node/{node_of[o.id]}/" if o.id in node_of else None,
        "power_checked_at": iso(o.power_checked_at),
        "resource_uri": PowerControlDeviceOutletResource.uri(o.id),
    } for o in outlets]


class PowerControlDeviceResource(Resource):
    name = "power_control_device"
    model = PowerControlDevice
    description = "An instance of a power control device, associated with a power control type"
    fields: ClassVar[dict[str, Field]] = {
        "address": Field("string", "IP address of power control device", readonly=False,
                         required=True),
        "device_type": Field("related", "A single related resource. Can be either a URI or set "
                             "of nested resource data.", readonly=False,
                             to="power_control_type", full=True, required=True),
        "id": Field("integer", _ID_HELP, unique=True),
        "name": Field("string", "Optional human-friendly display name (defaults to address)",
                      readonly=False, blank=True),
        "options": Field("string", "Custom options to be passed when invoking fence agent "
                         "(May be null: the type's default_options)", readonly=False,
                         nullable=True),
        "outlets": Field("related", "Many related resources. Can be either a list of URIs or "
                         "list of individually nested resource data. (May be null); a POST may "
                         "create outlets with the device", readonly=False, nullable=True,
                         to="power_control_device_outlet", many=True, full=True,
                         input={"type": "array", "items": {
                             "type": "object",
                             "properties": {name: {} for name in _NEW_OUTLET_FIELDS}}},
                         error=_NEW_OUTLETS_ERROR),
        "password": Field("string", "Password for device administration: write-only, stored "
                          "encrypted", readonly=False, write_only=True, nullable=True),
        "port": Field("integer", "Network port used to access power control device "
                      "(default: the type's default_port)", readonly=False),
        "resource_uri": Field("string", "URL for this object"),
        "username": Field("string", "Username for device administration", readonly=False,
                          blank=True),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {"name": ("exact",)}
    ordering = ("name",)
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PUT", "DELETE")

    def __init__(self, box: SecretBox) -> None:
        self.box = box

    def base_query(self, principal: Principal | None) -> peewee.ModelSelect:
        return (PowerControlDevice.select(PowerControlDevice, PowerControlType)
                .join(PowerControlType))

    def serialize(self, objects: list[PowerControlDevice],
                  principal: Principal | None) -> list[dict]:
        outlets: dict[int, list[dict]] = {d.id: [] for d in objects}
        if objects:
            found = list(PowerControlDeviceOutlet.select()
                         .where(PowerControlDeviceOutlet.device.in_(list(outlets)))
                         .order_by(PowerControlDeviceOutlet.id))
            for doc, outlet in zip(render_outlets(found), found, strict=True):
                outlets[outlet.device_id].append(doc)
        return [self._render(d, outlets[d.id]) for d in objects]

    def _render(self, d: PowerControlDevice, outlets: list[dict]) -> dict[str, Any]:
        return {"address": d.address, "device_type": PowerControlTypeResource.render(d.device_type),
                "id": d.id, "name": d.name, "options": d.options, "outlets": outlets,
                "port": d.port, "resource_uri": self.uri(d.id), "username": d.username}

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        values = self._values(principal, body)
        outlets = _new_outlets(values.pop("outlets", None) or [])
        device_id = power.create_device(principal, values, self.box, outlets)
        return 201, self.detail(principal, str(device_id))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        device = self.get_object(principal, obj_id)
        values = self._values(principal, body)
        values.pop("outlets", None)  # outlets change through their own resource
        power.update_device(principal, device.id, values, self.box)
        return 200, self.detail(principal, obj_id)

    def delete(self, principal: Principal, obj_id: str) -> None:
        power.delete_device(principal, self.get_object(principal, obj_id).id)

    def _values(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        values = _writable(self, principal, body)
        errors = related_fields(values, {"device_type": "power_control_type"})
        if errors:
            raise ValidationError(errors)
        return values


def _new_outlets(outlets: Any) -> list[dict[str, Any]]:
    """The outlets a device's POST creates with it, related objects as ids."""
    if not isinstance(outlets, list) or not all(isinstance(o, dict) for o in outlets):
        raise ValidationError({"outlets": _NEW_OUTLETS_ERROR})
    items = []
    for i, outlet in enumerate(outlets):
        unknown = sorted(set(outlet) - set(_NEW_OUTLET_FIELDS))
        item = {k: v for k, v in outlet.items() if k not in unknown}
        errors = {k: "Unknown field." for k in unknown}
        errors.update(related_fields(item, {"host": "host", "node": "node"}))
        if errors:
            raise ValidationError({f"outlets[{i}].{k}": v for k, v in errors.items()})
        items.append(item)
    return items
