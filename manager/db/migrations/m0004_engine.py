"""Commands, jobs, steps and locks (the engine)."""

import datetime

import peewee

VERSION = 4
NAME = "engine"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class _Model(peewee.Model):
    class Meta:
        legacy_table_names = False



class Command(_Model):
    message = peewee.TextField()
    created_at = peewee.DateTimeField(default=_now, index=True)
    complete = peewee.BooleanField(default=False, index=True)
    errored = peewee.BooleanField(default=False)
    cancelled = peewee.BooleanField(default=False)
    dismissed = peewee.BooleanField(default=False)
    created_by = peewee.CharField(max_length=150, default="")


class Job(_Model):
    class_name = peewee.CharField(max_length=64)
    description = peewee.TextField(default="")
    state = peewee.CharField(max_length=16, default="pending")  # pending, tasked, complete
    errored = peewee.BooleanField(default=False)
    cancelled = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=_now)
    modified_at = peewee.DateTimeField(default=_now)
    args = peewee.TextField(default="{}")
    object_type = peewee.CharField(max_length=32)
    object_id = peewee.IntegerField()
    from_state = peewee.CharField(max_length=32, null=True)  # NULL for a job that changes no state
    to_state = peewee.CharField(max_length=32, null=True)
    log = peewee.TextField(default="")
    created_by = peewee.CharField(max_length=150, default="")  # who asked (for the audit log)
    claimed_by = peewee.CharField(max_length=64, null=True)
    lease_until = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("state", "id"), False), (("object_type", "object_id"), False))


class CommandJob(_Model):
    command = peewee.ForeignKeyField(Command, on_delete="CASCADE", index=True)
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)

    class Meta:
        indexes = ((("command", "job"), True),)


class JobWait(_Model):
    """``job`` may start only once ``waits_for`` is complete (whatever its outcome)."""

    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)
    waits_for = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)


class JobLock(_Model):
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)
    object_type = peewee.CharField(max_length=32)
    object_id = peewee.IntegerField()
    write = peewee.BooleanField()
    released = peewee.BooleanField(default=False)  # set when the job completes

    class Meta:
        indexes = ((("object_type", "object_id", "released"), False),)


class Step(_Model):
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)
    class_name = peewee.CharField(max_length=64)
    description = peewee.TextField(default="")
    args = peewee.TextField(default="{}")  # secrets removed
    step_index = peewee.IntegerField()
    step_count = peewee.IntegerField()
    attempt = peewee.IntegerField(default=0)
    state = peewee.CharField(max_length=16, default="incomplete")  # incomplete, success, failed
    log = peewee.TextField(default="")
    console = peewee.TextField(default="")
    backtrace = peewee.TextField(default="")
    result = peewee.TextField(null=True)
    action_id = peewee.CharField(max_length=32, null=True)
    host_id = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=_now)
    modified_at = peewee.DateTimeField(default=_now)


def apply(database: peewee.Database) -> None:
    models = [Command, Job, CommandJob, JobWait, JobLock, Step]
    with database.bind_ctx(models):
        database.create_tables(models)
