"""``/api/audit_log/``: who changed what, from where and how it ended (superusers only)."""

from __future__ import annotations

from typing import Any, ClassVar

import peewee

from manager.db.audit import AuditRecord
from manager.domain.accounts import Principal
from manager.domain.errors import PermissionDenied
from manager.http.iml.resource import Field, Resource, iso

_TIME = ("exact", "gte", "lte", "gt", "lt")


class AuditLogResource(Resource):
    name = "audit_log"
    model = AuditRecord
    description = ("Every state-changing request (with secrets removed), login and action "
                   "dispatched to an agent, with who, from where, when and the outcome.")
    fields: ClassVar[dict[str, Field]] = {
        "action_id": Field("string", "The dispatched action, for kind 'action'", nullable=True),
        "address": Field("string", "Client address"),
        "at": Field("datetime", "When it happened"),
        "command_id": Field("integer", "Command started by the request", nullable=True),
        "credential": Field("string", "token, session or empty (anonymous)"),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "kind": Field("string", "request, login or action"),
        "method": Field("string", "HTTP method"),
        "object_id": Field("string", "Id of the object changed"),
        "object_type": Field("string", "Type of the object changed (resource name)"),
        "outcome": Field("string", "ok, refused, or an action's queued/succeeded/failed/expired"),
        "path": Field("string", "Request path"),
        "request_id": Field("string", "The request's X-Request-Id"),
        "resource_uri": Field("string", "URL for this object"),
        "status": Field("integer", "HTTP status answered", nullable=True),
        "summary": Field("string", "The change, as JSON with secrets masked"),
        "username": Field("string", "Who (the claimed name for a failed login)"),
        "user": Field("string", "Filter only: same as username", column="username",
                      filter_only=True),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "user": ("exact", "in"), "username": ("exact", "in"), "object_type": ("exact", "in"),
        "object_id": ("exact", "in"), "kind": ("exact", "in"), "at": _TIME, "status": _TIME,
        "action_id": ("exact",), "outcome": ("exact", "in")}
    ordering = ("at", "id")

    def base_query(self, principal: Principal | None) -> peewee.ModelSelect:
        if principal is None or not principal.is_superuser:
            raise PermissionDenied("only superusers may read the audit log")
        return AuditRecord.select()

    def serialize(self, objects: list[AuditRecord], principal: Principal | None) -> list[dict]:
        return [self._render(r) for r in objects]

    def _render(self, r: AuditRecord) -> dict[str, Any]:
        doc = {name: getattr(r, name) for name in (
            "action_id", "address", "command_id", "credential", "id", "kind", "method",
            "object_id", "object_type", "outcome", "path", "request_id", "status", "summary",
            "username")}
        doc["at"] = iso(r.at)
        doc["resource_uri"] = self.uri(r.id)
        return doc
