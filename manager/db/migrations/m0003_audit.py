"""The audit log."""

import peewee

VERSION = 3
NAME = "audit"


class AuditRecord(peewee.Model):
    at = peewee.DateTimeField(index=True)
    kind = peewee.CharField(max_length=16)
    username = peewee.CharField(max_length=150, default="", index=True)
    user_id = peewee.IntegerField(null=True)
    credential = peewee.CharField(max_length=16, default="")
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
        legacy_table_names = False
        indexes = ((("object_type", "object_id"), False),)


def apply(database: peewee.Database) -> None:
    with database.bind_ctx([AuditRecord]):
        database.create_tables([AuditRecord])
