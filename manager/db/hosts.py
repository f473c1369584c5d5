"""Server profiles, registration tokens, hosts, the actions sent to their agents, and alerts."""

from __future__ import annotations

import peewee

from manager.db.base import BaseModel, utcnow


class ServerProfile(BaseModel):
    name = peewee.CharField(max_length=64, unique=True)
    ui_name = peewee.CharField(max_length=128)
    ui_description = peewee.TextField(default="")
    managed = peewee.BooleanField(default=False)
    worker = peewee.BooleanField(default=False)
    default = peewee.BooleanField(default=False)
    user_selectable = peewee.BooleanField(default=True)
    initial_state = peewee.CharField(max_length=32)
    ntp = peewee.BooleanField(default=False)
    corosync = peewee.BooleanField(default=False)
    corosync2 = peewee.BooleanField(default=False)
    pacemaker = peewee.BooleanField(default=False)
    roles = peewee.CharField(max_length=255, default="")  # comma-separated agent roles


class RegistrationToken(BaseModel):
    secret = peewee.CharField(max_length=64, unique=True)
    expiry = peewee.DateTimeField()
    credits = peewee.IntegerField(default=1)
    cancelled = peewee.BooleanField(default=False)
    profile = peewee.ForeignKeyField(ServerProfile, on_delete="RESTRICT")
    created_at = peewee.DateTimeField(default=utcnow)
    created_by = peewee.CharField(max_length=150, default="")


class Host(BaseModel):
    fqdn = peewee.CharField(max_length=255, index=True)
    nodename = peewee.CharField(max_length=255)
    address = peewee.CharField(max_length=255, default="")
    boot_time = peewee.DateTimeField(null=True)
    server_profile = peewee.ForeignKeyField(ServerProfile, on_delete="RESTRICT")
    state = peewee.CharField(max_length=32, index=True)
    state_modified_at = peewee.DateTimeField(default=utcnow)
    install_method = peewee.CharField(max_length=32, default="agent")
    roles = peewee.CharField(max_length=255, default="")  # ",storage,bmc," for exact matching
    agent_version = peewee.CharField(max_length=64, default="")
    inventory = peewee.TextField(default="{}")
    cert_serial = peewee.CharField(max_length=64, unique=True, null=True)
    cert_revoked = peewee.BooleanField(default=False)
    registered_at = peewee.DateTimeField(default=utcnow)
    last_contact = peewee.DateTimeField(null=True)
    connected = peewee.BooleanField(default=False)
    token = peewee.ForeignKeyField(RegistrationToken, null=True, on_delete="SET NULL")


class Action(BaseModel):
    """One request to an agent; a row before it is sent, so a restart never loses it."""

    id = peewee.CharField(max_length=32, primary_key=True)
    host = peewee.ForeignKeyField(Host, on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    args = peewee.TextField(default="{}")
    state = peewee.CharField(max_length=16, default="queued")  # queued, sent, succeeded, failed
    created_at = peewee.DateTimeField(default=utcnow)
    deadline = peewee.DateTimeField(index=True)
    sent_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    result = peewee.TextField(null=True)
    error = peewee.TextField(default="")
    console = peewee.TextField(default="[]")
    caused_by = peewee.CharField(max_length=150, default="")

    class Meta:
        indexes = ((("host", "state"), False),)


class Alert(BaseModel):
    alert_type = peewee.CharField(max_length=64)
    severity = peewee.CharField(max_length=16)
    message = peewee.TextField()
    alert_item_type = peewee.CharField(max_length=32)
    alert_item_id = peewee.IntegerField(null=True)
    alert_item_str = peewee.CharField(max_length=255, default="")
    begin = peewee.DateTimeField(default=utcnow)
    end = peewee.DateTimeField(null=True)
    active = peewee.BooleanField(null=True, default=True)  # NULL once ended (IML's convention)
    dismissed = peewee.BooleanField(default=False)
    variant = peewee.CharField(max_length=255, default="{}")
    lustre_pid = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("alert_type", "alert_item_type", "alert_item_id", "active"), True),)
