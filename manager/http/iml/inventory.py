"""``/api/node/`` (Shepherd): the node inventory in IML's conventions, with bulk create and
update by ``PATCH /api/node/`` ``{"objects": [...]}`` as tastypie's list PATCH.

Related objects (a node's ``host`` and ``outlet``) are given as URIs, ids or nested objects
with an ``id`` or ``resource_uri``, and rendered as URIs.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

import peewee

from manager.db.hosts import Host
from manager.db.inventory import Node, NodeGroup, NodeMac
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.inventory import checks, nodes, saving
from manager.domain.permissions import require_administrator
from manager.http.iml import query as q
from manager.http.iml.handlers import ListHandler
from manager.http.iml.resource import Field, Resource, iso

_URI = re.compile(r"^/api/([a-z_]+)/(\d+)/?\Z")


def related_id(value: Any, resource: str) -> int | None:
    """The id in ``value``: an id, ``/api/<resource>/<id>/``, or an object with either."""
    if isinstance(value, dict):
        value = value.get("resource_uri") or value.get("id")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    match = _URI.match(value) if isinstance(value, str) else None
    if match and match.group(1) == resource:
        return int(match.group(2))
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    raise checks.Invalid(f"Must be a /api/{resource}/ URI or id.")


def related_fields(values: dict[str, Any], resources: dict[str, str]) -> dict[str, str]:
    """Turn the related fields of ``values`` into ids in place; errors by field."""
    errors = {}
    for field, resource in resources.items():
        if field in values:
            try:
                values[field] = related_id(values[field], resource)
            except checks.Invalid as exc:
                errors[field] = str(exc)
    return errors


class BulkListHandler(ListHandler):
    """``PATCH`` on a list: ``{"objects": [...]}`` creates and updates many objects in one
    request and one transaction (the resource's ``update_list``)."""

    async def patch(self) -> None:
        body = self.write_body()
        status, doc = await self.audited_write("request", self.resource.name, None, body,
                                               self.resource.update_list, self.principal, body)
        self.answer(status, doc)


def bulk_routes(ctx: Any, resources: list[Resource]) -> list[tuple]:
    """Routes for the lists that take PATCH; listed before the generic ones, which they
    override."""
    return [(rf"/api/{r.name}/?", BulkListHandler, {"ctx": ctx, "resource": r})
            for r in resources if hasattr(r, "update_list")]


class _Membership:
    """``groups=G`` (or ``macs=M``): nodes having a row ``G`` in a list table."""

    def __init__(self, model: type[peewee.Model], column: str) -> None:
        self.model, self.column = model, getattr(model, column)

    def __eq__(self, value: object) -> Any:  # type: ignore[override]
        return self.in_([value])

    def in_(self, values: list[Any]) -> Any:
        return Node.id.in_(self.model.select(self.model.node).where(self.column.in_(values)))

    __hash__ = None  # type: ignore[assignment]


class _LiveHost:
    """``host=H`` and ``host__isnull``: a node whose host was removed has none (as it is
    rendered), though its row may still name it."""

    def __eq__(self, value: object) -> Any:  # type: ignore[override]
        return (Node.host == value) & self._live()

    def is_null(self, null: bool = True) -> Any:
        return Node.host.is_null() | ~self._live() if null else self._live()

    @staticmethod
    def _live() -> Any:
        return Node.host.in_(Host.select(Host.id).where(Host.state != hosts.REMOVED))

    __hash__ = None  # type: ignore[assignment]


READ_ONLY = ("created_at", "modified_at", "resource_uri", "id")
# filter values written as the node fields store them ("compute" finds "Compute")
_CANONICAL = {"role": nodes.canonical_role, "sub_role": nodes.canonical_sub_role,
              "xname": lambda v: _quietly(nodes.check_xname, v),
              "macs": lambda v: _quietly(nodes.normal_mac, v),
              "host": lambda v: _quietly(related_id, v, "host"),
              "outlet": lambda v: _quietly(related_id, v, "power_control_device_outlet")}


def _quietly(check: Any, value: Any, *args: Any) -> Any:
    try:
        return check(value, *args)
    except checks.Invalid:
        return value


class NodeResource(Resource):
    name = "node"
    model = Node
    description = ("A machine Shepherd knows, by xname and/or hostname, with its role, groups, "
                   "MAC addresses and power outlet. PATCH /api/node/ {\"objects\": [...]} "
                   "creates and updates many at once (by id, else xname, else hostname), all "
                   "or nothing.")
    fields: ClassVar[dict[str, Field]] = {
        "architecture": Field("string", "CPU architecture: x86_64, aarch64, ppc64le, s390x or "
                              "riscv64", readonly=False, default="x86_64",
                              choices=nodes.ARCHITECTURES),
        "created_at": Field("datetime", "When the node was added"),
        "enabled": Field("boolean", "Whether boots and power actions may include the node",
                         readonly=False, default=True),
        "groups": Field("list", "Names of the groups the node is in (BOS node groups)",
                        readonly=False),
        "host": Field("related", "The host of the agent running on the node", readonly=False,
                      nullable=True, to="host"),
        "hostname": Field("string", "Host name (unique)", readonly=False, nullable=True,
                          unique=True),
        "id": Field("integer", "Integer record identifier, unique for objects of this type",
                    unique=True),
        "macs": Field("list", "MAC addresses of the node's interfaces (each on one node only)",
                      readonly=False),
        "modified_at": Field("datetime", "When the node was last changed"),
        "outlet": Field("related", "The power outlet (power_control_device_outlet) that "
                        "switches the node", readonly=False, nullable=True,
                        to="power_control_device_outlet"),
        "resource_uri": Field("string", "URL for this object"),
        "role": Field("string", "HSM role: " + ", ".join(nodes.ROLES), readonly=False,
                      default="Compute", choices=nodes.ROLES),
        "sub_role": Field("string", "HSM sub-role: " + ", ".join(nodes.SUB_ROLES) + " (or "
                          "empty)", readonly=False, blank=True, default=""),
        "xname": Field("string", "Cray xname, x<cabinet>c<chassis>s<slot>b<bmc>n<node> "
                       "(unique)", readonly=False, nullable=True, unique=True),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": ("exact", "in"), "xname": ("exact", "in", "startswith"),
        "hostname": ("exact", "in", "startswith"), "role": ("exact", "in"),
        "sub_role": ("exact", "in"), "groups": ("exact", "in"), "enabled": ("exact",),
        "architecture": ("exact", "in"), "macs": ("exact",), "host": ("exact", "isnull"),
        "outlet": ("exact", "isnull")}
    ordering = ("xname", "hostname", "id")
    list_methods = ("GET", "POST", "PATCH")
    detail_methods = ("GET", "PUT", "PATCH", "DELETE")
    dry_run_methods = ("PATCH list",)

    def body_schema(self, method: str, on_list: bool) -> dict[str, Any]:
        if method != "PATCH" or not on_list:
            return super().body_schema(method, on_list)
        node = self.request_schema(creating=False)
        return {"type": "object", "required": ["objects"], "additionalProperties": False,
                "properties": {"objects": {"type": "array", "items": node,
                                           "maxItems": saving.MAX_BULK},
                               "dry_run": {"type": "boolean"}}}

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        if method != "PATCH" or not on_list:
            return super().write_responses(method, on_list)
        count = {"type": "integer", "minimum": 0}
        return {200: {"type": "object", "required": ["created", "updated", "unchanged",
                                                     "dry_run"],
                      "additionalProperties": False,
                      "properties": {"created": count, "updated": count, "unchanged": count,
                                     "dry_run": {"type": "boolean"},
                                     "objects": {"type": "array",
                                                 "items": {"type": "string"}}}}}

    def column_for(self, name: str) -> Any:
        if name == "groups":
            return _Membership(NodeGroup, "name")
        if name == "macs":
            return _Membership(NodeMac, "mac")
        if name == "host":
            return _LiveHost()
        return super().column_for(name)

    def list_page(self, principal: Principal | None, lq: q.ListQuery) -> tuple[int, list[dict]]:
        filters = tuple(
            dataclasses.replace(f, values=tuple(_CANONICAL[f.field](v) for v in f.values))
            if f.field in _CANONICAL and f.lookup in ("exact", "in") else f for f in lq.filters)
        # xname order is numeric (x3000c0s2… before x3000c0s10…): its zero-padded key
        order = tuple(("xname_key" if name == "xname" else name, desc)
                      for name, desc in lq.order_by)
        return super().list_page(principal, dataclasses.replace(lq, filters=filters,
                                                                order_by=order))

    def serialize(self, objects: list[Node], principal: Principal | None) -> list[dict]:
        groups, macs = nodes.lists_of([n.id for n in objects])
        live = nodes.live_hosts([n.host_id for n in objects if n.host_id is not None])
        return [self._render(n, groups[n.id], macs[n.id], n.host_id in live) for n in objects]

    def _render(self, n: Node, groups: list[str], macs: list[str], live: bool) -> dict[str, Any]:
        return {
            "architecture": n.architecture, "created_at": iso(n.created_at),
            "enabled": n.enabled, "groups": groups,
            "host": f"/api/host/{n.host_id}/" if live else None,
            "hostname": n.hostname, "id": n.id, "macs": macs, "modified_at": iso(n.modified_at),
            "outlet": (f"/api/power_control_device_outlet/{n.outlet_id}/"
                       if n.outlet_id is not None else None),
            "resource_uri": self.uri(n.id), "role": n.role, "sub_role": n.sub_role,
            "xname": n.xname,
        }

    # --- writing -----------------------------------------------------------------------

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        require_administrator(principal, nodes.WHAT)
        saved = saving.save(principal, [self._values(body, keep_id=False)], "create")
        return 201, self.detail(principal, str(saved.ids[0]))

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        require_administrator(principal, nodes.WHAT)
        node = self.get_object(principal, obj_id)
        saving.save(principal, [{**self._values(body, keep_id=False), "id": node.id}], "update")
        return 200, self.detail(principal, obj_id)

    def delete(self, principal: Principal, obj_id: str) -> None:
        nodes.delete(principal, self.get_object(principal, obj_id).id)

    def update_list(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        """``{"objects": [...]}``: 200 with the counts of nodes ``created``, ``updated`` and
        ``unchanged`` (described as they are) and the objects' URIs in order; with
        ``"dry_run": true`` only the counts, and nothing saved."""
        require_administrator(principal, nodes.WHAT)
        unknown = sorted(set(body) - {"objects", "dry_run"})
        if unknown:
            raise ValidationError({name: "Unknown field." for name in unknown})
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ValidationError({"dry_run": "Must be true or false."})
        values = self._bulk_values(body.get("objects"))
        with Node._meta.database.atomic() as transaction:
            saved = saving.save(principal, values, "upsert")
            if dry_run:
                transaction.rollback()
        counts = {"created": saved.created, "updated": saved.updated,
                  "unchanged": saved.unchanged, "dry_run": dry_run}
        return 200, counts if dry_run else {**counts,
                                            "objects": [self.uri(i) for i in saved.ids]}

    def _bulk_values(self, objects: Any) -> list[Any]:
        if not isinstance(objects, list):
            raise ValidationError({"objects": "A list of nodes is required."})
        values, errors = [], []
        for i, obj in enumerate(objects):
            try:
                values.append(self._values(obj, keep_id=True) if isinstance(obj, dict) else obj)
            except ValidationError as exc:
                errors += [f"objects[{i}].{k}: {v}" for k, v in exc.errors.items()]
        if errors:
            raise ValidationError({"objects": "; ".join(errors[:saving.MAX_ERRORS_SHOWN])})
        return values

    def _values(self, body: dict[str, Any], keep_id: bool) -> dict[str, Any]:
        """The writable fields of ``body`` with related objects as ids (and, in a bulk
        request, the node's ``id`` from it or its ``resource_uri``)."""
        values = {k: v for k, v in body.items() if k not in READ_ONLY}
        errors = related_fields(values, {"host": "host", "outlet": "power_control_device_outlet"})
        if keep_id and (body.get("id") is not None or body.get("resource_uri")):
            try:
                values["id"] = related_id(body.get("resource_uri") or body.get("id"), "node")
            except checks.Invalid as exc:
                errors["id"] = str(exc)
        if errors:
            raise ValidationError(errors)
        return values
