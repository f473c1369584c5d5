"""``/api/server_profile/`` and ``/api/host/`` (iml-api.md), with Shepherd's contact fields."""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
import peewee

from manager.db.hosts import Host, ServerProfile
from manager.domain import hosts
from manager.domain.accounts import Principal
from manager.domain.errors import NotFound, ValidationError
from manager.domain.host_lifecycle import HOST_CONTENT_TYPE_ID, HOST_MACHINE
from manager.domain.permissions import require_administrator
from manager.engine.commands import PlanError
from manager.engine.offers import available_for
from manager.engine.runner import Engine
from manager.engine.statemachine import InvalidTransition
from manager.http.iml.commands import CommandResource, dry_run_requested, plan_error
from manager.http.iml.resource import Field, Resource, iso
from manager.http.iml.ssh_hosts import SSH_FIELDS, TestHostResource, add_over_ssh


class ServerProfileResource(Resource):
    """Addressed by name, as IML's profiles are (``/api/server_profile/compute_node/``)."""

    name = "server_profile"
    model = ServerProfile
    description = "A kind of server and what Shepherd does with it; each implies agent roles."
    fields: ClassVar[dict[str, Field]] = {
        "corosync": Field("boolean", "True if the host will manage corosync"),
        "corosync2": Field("boolean", "True if the host will manage corosync2"),
        "default": Field("boolean", "If True, this profile is presented as the default"),
        "initial_state": Field("string", "The state a host of this profile is set up into"),
        "managed": Field("boolean", "True if the host will be managed"),
        "name": Field("string", "Unique name", unique=True),
        "ntp": Field("boolean", "True if the host will manage ntp"),
        "pacemaker": Field("boolean", "True if the host will manage pacemaker"),
        "resource_uri": Field("string", "URL for this object"),
        "roles": Field("list", "Agent roles the profile implies (Shepherd)"),
        "ui_description": Field("string", "Description of the server profile"),
        "ui_name": Field("string", "Human readable name"),
        "user_selectable": Field("boolean", "Whether users may choose it"),
        "worker": Field("boolean", "True if the host is a worker node"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "default": ("exact",), "worker": ("exact",), "user_selectable": ("exact",),
        "managed": ("exact",), "name": ("exact",)}
    ordering = ("managed", "default")

    def get_object(self, principal: Principal | None, obj_id: str) -> ServerProfile:
        profile = ServerProfile.get_or_none(ServerProfile.name == obj_id)
        if profile is None:
            raise NotFound(f"server profile {obj_id!r} does not exist")
        return profile

    def serialize(self, objects: list[ServerProfile], principal: Principal | None) -> list[dict]:
        return [self.render(p) for p in objects]

    @classmethod
    def render(cls, p: ServerProfile) -> dict[str, Any]:
        doc = {name: getattr(p, name) for name in (
            "corosync", "corosync2", "default", "initial_state", "managed", "name", "ntp",
            "pacemaker", "ui_description", "ui_name", "user_selectable", "worker")}
        doc["roles"] = hosts.profile_roles(p)
        doc["resource_uri"] = cls.uri(p.name)
        return doc


class HostResource(Resource):
    name = "host"
    model = Host
    description = ("A server Shepherd manages through its agent. PUTs must set the state "
                   "attribute (202 with the command, or with \"dry_run\": true 200 with its "
                   "plan); removal (state 'removed' or DELETE) revokes its certificate.")
    fields: ClassVar[dict[str, Field]] = {
        "address": Field("string", "Address the agent connects from"),
        "agent_version": Field("string", "Version of the host's agent (Shepherd)"),
        "available_actions": Field("list", "available_transitions and available_jobs, in "
                                           "display order"),
        "available_jobs": Field("list", "Possible non-state-change jobs"),
        "available_transitions": Field("list", "List of {verb, state} for possible states"),
        "boot_time": Field("datetime", "When the host booted", nullable=True),
        "client_mounts": Field("list", "Lustre client mounts", nullable=True),
        "connected": Field("boolean", "Whether the agent's stream is up now (Shepherd)"),
        "content_type_id": Field("integer", "Integer type identifier"),
        "corosync_configuration": Field("related", "Corosync configuration", nullable=True),
        "fqdn": Field("string", "Fully qualified domain name"),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "immutable_state": Field("boolean", "If true, the state may not be changed by the user"),
        "install_method": Field("string", "How the agent was installed"),
        "label": Field("string", "Non-unique human readable name for presentation"),
        "last_contact": Field("datetime", "When the agent was last heard from (Shepherd)",
                              nullable=True),
        "lnet_configuration": Field("related", "LNet configuration", nullable=True),
        "locks": Field("dict", "Lists of locked job ids for this object"),
        "member_of_active_filesystem": Field("boolean", "Whether it serves an active file system"),
        "needs_update": Field("boolean", "True if there are package updates available"),
        "nids": Field("list", "LNet NIDs", nullable=True),
        "nodename": Field("string", "Node name"),
        "pacemaker_configuration": Field("related", "Pacemaker configuration", nullable=True),
        "properties": Field("string", "Hardware properties reported by the agent (JSON)"),
        "resource_uri": Field("string", "URL for this object"),
        "role": Field("string", "Filter only: hosts having this agent role", filter_only=True),
        "roles": Field("list", "Agent roles of this host (Shepherd)"),
        "server_profile": Field("related", "The host's server profile"),
        "state": Field("string", "May be set based on available_transitions", readonly=False),
        "state_modified_at": Field("datetime", "When the state last changed"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "role": ("exact",), "id": ("exact",), "fqdn": ("exact", "startswith")}
    ordering = ("fqdn",)
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PUT", "DELETE")
    dry_run_methods = ("PUT detail",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def body_schema(self, method: str, on_list: bool) -> dict[str, Any]:
        """POST adds a host over SSH: it takes the SSH fields, not the host's."""
        if on_list:
            return TestHostResource().request_schema(creating=True)
        return super().body_schema(method, on_list)

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        if method == "PUT":  # 202 with the command, 204 already there, 200 a dry run's plan
            return {200: "plan", 202: "command", 204: None}
        if method == "DELETE":
            return {202: "command", 204: None}
        return super().write_responses(method, on_list)

    async def acreate(self, ctx: Any, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        """Add a host over SSH (``address`` + ``root_pw`` or ``private_key``)."""
        allowed = set(SSH_FIELDS) - {"resource_uri"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ValidationError({name: "Unknown field." for name in unknown})
        host_id = await add_over_ssh(ctx, principal, body)
        return 201, await ctx.db.run(self.detail, principal, str(host_id))

    def base_query(self, principal: Principal | None) -> peewee.ModelSelect:
        return Host.select().where(Host.state != hosts.REMOVED)

    def column_for(self, name: str) -> Any:
        if name == "role":
            return _RoleColumn()
        return super().column_for(name)

    def rows(self, query: peewee.ModelSelect) -> list[Any]:
        """Hosts as named tuples (``server_profile`` is the profile's id): building 10,000
        model instances costs more than rendering them."""
        return list(query.select(*_RENDERED).namedtuples())

    def detail(self, principal: Principal | None, obj_id: str) -> dict:
        host = self.get_object(principal, obj_id)
        return self.serialize(self.rows(self.base_query(principal).where(Host.id == host.id)),
                              principal)[0]

    def serialize(self, objects: list[Any], principal: Principal | None) -> list[dict]:
        """A page of host rows: the few server profiles are read and rendered once per page,
        not joined to every row (a list of 10,000 hosts shares a handful of profiles)."""
        offered = available_for(self.engine.registry, "host", objects, lambda h: h.state)
        wanted = {h.server_profile for h in objects}
        profiles = {p.id: ServerProfileResource.render(p)
                    for p in ServerProfile.select().where(ServerProfile.id.in_(wanted))}
        return [{**self._render(h, profiles[h.server_profile]), **offered[h.id]}
                for h in objects]

    def _render(self, h: Any, profile: dict[str, Any]) -> dict[str, Any]:
        return {
            "address": h.address, "agent_version": h.agent_version,
            "boot_time": iso(h.boot_time), "client_mounts": [], "connected": h.connected,
            "content_type_id": HOST_CONTENT_TYPE_ID, "corosync_configuration": None,
            "fqdn": h.fqdn, "id": h.id, "immutable_state": h.state in HOST_MACHINE.immutable_states,
            "install_method": h.install_method, "label": h.fqdn, "last_contact": iso(h.last_contact),
            "lnet_configuration": None,
            "member_of_active_filesystem": False, "needs_update": False, "nids": [],
            "nodename": h.nodename, "pacemaker_configuration": None,
            "properties": orjson.dumps(_properties(h.inventory)).decode(),
            "resource_uri": self.uri(h.id), "roles": hosts.host_roles(h),
            "server_profile": profile,
            "state": h.state, "state_modified_at": iso(h.state_modified_at),
        }

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        """PUT ``{"state": S}``: 202 with the command that takes the host there, 204 when it
        is there already, 400 naming the reachable states otherwise."""
        self.check_fields({k: v for k, v in body.items() if k != "dry_run"})
        dry_run = dry_run_requested(body)
        host = self.get_object(principal, obj_id)
        state = body.get("state")
        if not isinstance(state, str) or not state:
            raise ValidationError({"state": "PUTs to host must set the state attribute."})
        return self._change(principal, host, state, dry_run)

    def delete(self, principal: Principal, obj_id: str) -> tuple[int, Any]:
        """DELETE: remove the host through the engine (202 with the command)."""
        return self._change(principal, self.get_object(principal, obj_id), hosts.REMOVED, False)

    def _change(self, principal: Principal, host: Host, state: str, dry_run: bool
                ) -> tuple[int, Any]:
        require_administrator(principal, "change the state of hosts")
        try:
            result = self.engine.plan_state_change(("host", host.id), state, principal.username,
                                                   dry_run)
        except InvalidTransition as exc:
            raise ValidationError({"state": str(exc)}) from None
        except PlanError as exc:
            raise plan_error(exc) from None
        if result is None:
            return 204, None
        if isinstance(result, dict):
            return 200, result
        return 202, {"command": CommandResource(self.engine).render_id(result)}


_RENDERED = (Host.id, Host.fqdn, Host.nodename, Host.address, Host.boot_time, Host.server_profile,
             Host.state, Host.state_modified_at, Host.install_method, Host.roles,
             Host.agent_version, Host.inventory, Host.last_contact, Host.connected)


class _RoleColumn:
    """``role=storage`` matches hosts whose role list contains ``storage``."""

    def __eq__(self, value: object) -> Any:  # type: ignore[override]
        return Host.roles.contains(f",{value},")

    __hash__ = None  # type: ignore[assignment]


def _properties(inventory_json: str) -> dict[str, Any]:
    try:
        inventory = orjson.loads(inventory_json or "{}")
    except orjson.JSONDecodeError:
        return {}
    keys = ("architecture", "kernel", "cpu_count", "memory_bytes")
    return {k: inventory[k] for k in keys if k in inventory}
