"""Raising and ending alerts: at most one active alert per (type, item); raising twice is a
no-op and ending sets ``end`` and makes ``active`` NULL (IML's convention)."""

from __future__ import annotations

import json
from typing import Any

import peewee

from manager.db.base import utcnow
from manager.db.hosts import Alert

WARNING, ERROR, INFO = "WARNING", "ERROR", "INFO"


def raise_alert(alert_type: str, severity: str, message: str, item_type: str, item_id: int,
                item_str: str = "", variant: dict[str, Any] | None = None) -> bool:
    """Create the alert unless an active one exists; True if it was created."""
    try:
        with Alert._meta.database.atomic():
            Alert.create(alert_type=alert_type, severity=severity, message=message,
                         alert_item_type=item_type, alert_item_id=item_id, alert_item_str=item_str,
                         variant=json.dumps(variant or {}), begin=utcnow())
    except peewee.IntegrityError:
        return False
    return True


def end_alert(alert_type: str, item_type: str, item_id: int) -> int:
    """End the active alert of this type on this item; returns how many ended (0 or 1)."""
    return (Alert.update(active=None, end=utcnow())
            .where(Alert.alert_type == alert_type, Alert.alert_item_type == item_type,
                   Alert.alert_item_id == item_id, Alert.active == True)
            .execute())


def end_alerts_of(item_type: str, item_ids: list[int], alert_type: str) -> int:
    if not item_ids:
        return 0
    return (Alert.update(active=None, end=utcnow())
            .where(Alert.alert_type == alert_type, Alert.alert_item_type == item_type,
                   Alert.alert_item_id.in_(item_ids), Alert.active == True)
            .execute())
