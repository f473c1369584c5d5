"""``/api/alert/`` (iml-api.md): active and historical alerts; only ``dismissed`` is writable."""

from __future__ import annotations

from typing import Any, ClassVar

from manager.db.hosts import Alert
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.permissions import require_administrator
from manager.http.iml.resource import Field, Resource, iso

_COMPARE = ("exact", "gte", "lte", "gt", "lt")
_TEXT = ("exact", "contains", "startswith", "endswith", "in")


class AlertResource(Resource):
    name = "alert"
    model = Alert
    description = ("Notification of a bad health state of an object; active, or a "
                   "historical record once it ended.")
    fields: ClassVar[dict[str, Field]] = {
        "_message": Field("string", "Message associated with the alert", nullable=True),
        "active": Field("boolean", "True while the condition lasts (null once it ended)",
                        nullable=True),
        "affected": Field("list", "Objects affected by the alert", nullable=True),
        "alert_item": Field("string", "URI of the affected item"),
        "alert_item_id": Field("integer", "Id of the affected item", nullable=True),
        "alert_item_str": Field("string", "Human readable noun for the affected item"),
        "alert_type": Field("string", "Type of the alert"),
        "begin": Field("datetime", "Time at which the alert started"),
        "created_at": Field("datetime", "Time at which the alert was recorded"),
        "dismissed": Field("boolean", "True once a user has acknowledged the alert",
                           readonly=False),
        "end": Field("datetime", "Time at which the alert ended", nullable=True),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "lustre_pid": Field("integer", "Lustre process id", nullable=True),
        "message": Field("string", "Human readable description of the alert"),
        "record_type": Field("string", "The type of the alert", column="alert_type"),
        "resource_uri": Field("string", "URL for this object"),
        "severity": Field("string", "INFO, DEBUG, CRITICAL, WARNING or ERROR"),
        "variant": Field("string", "Variant data (JSON)"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "begin": _COMPARE, "alert_type": _TEXT, "record_type": _TEXT, "active": ("exact",),
        "message": ("contains", "exact", "startswith", "endswith"), "id": _COMPARE,
        "end": _COMPARE, "severity": _TEXT, "created_at": _COMPARE, "dismissed": ("exact",),
        "alert_item_id": _COMPARE, "lustre_pid": _COMPARE,
    }
    ordering = ("begin", "end", "active")
    detail_methods = ("GET", "PATCH", "PUT")

    def serialize(self, objects: list[Alert], principal: Principal | None) -> list[dict]:
        return [self._render(a) for a in objects]

    def _render(self, a: Alert) -> dict[str, Any]:
        return {
            "_message": a.message, "active": a.active, "affected": [],
            "alert_item": f"/api/{a.alert_item_type}/{a.alert_item_id}/",
            "alert_item_id": a.alert_item_id, "alert_item_str": a.alert_item_str,
            "alert_type": a.alert_type, "begin": iso(a.begin), "created_at": iso(a.created_at),
            "dismissed": a.dismissed, "end": iso(a.end), "id": a.id, "lustre_pid": a.lustre_pid,
            "message": a.message, "record_type": a.alert_type, "resource_uri": self.uri(a.id),
            "severity": a.severity, "variant": a.variant,
        }

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        require_administrator(principal, "dismiss alerts")
        self.check_fields(body)
        alert = self.get_object(principal, obj_id)
        if "dismissed" in body:
            if not isinstance(body["dismissed"], bool):
                raise ValidationError({"dismissed": "Must be true or false."})
            Alert.update(dismissed=body["dismissed"]).where(Alert.id == alert.id).execute()
        return 200, self.detail(principal, obj_id)
