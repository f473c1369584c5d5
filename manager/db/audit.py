"""The audit log: who changed what, from where, when, and how it ended."""

from __future__ import annotations

import peewee

from manager.db.base import BaseModel, utcnow


class AuditRecord(BaseModel):
    at = peewee.DateTimeField(default=utcnow, index=True)
    kind = peewee.CharField(max_length=16)  # request | login | action
    username = peewee.CharField(max_length=150, default="", index=True)
    user_id = peewee.IntegerField(null=True)
    credential = peewee.CharField(max_length=16, default="")  # token | session | ""
    address = peewee.CharField(max_length=64, default="")
    method = peewee.CharField(max_length=8, default="")
    path = peewee.CharField(max_length=512, default="")
    object_type = peewee.CharField(max_length=64, default="")
    object_id = peewee.CharField(max_length=64, default="")
    summary = peewee.TextField(default="{}")
    status = peewee.IntegerField(null=True)
    outcome = peewee.CharField(max_length=32, default="")
    command_id = peewee.IntegerField(null=True)
    action_id = peewee.CharField(max_length=32, null=True, index=True)
    request_id = peewee.CharField(max_length=64, default="")

    class Meta:
        indexes = ((("object_type", "object_id"), False),)
