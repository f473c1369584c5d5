"""Commands, jobs, steps and locks: the engine's work as rows, so a restart resumes it."""

from __future__ import annotations

import peewee

from manager.db.base import BaseModel, utcnow

PENDING, TASKED, COMPLETE = "pending", "tasked", "complete"


class Command(BaseModel):
    message = peewee.TextField()
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    complete = peewee.BooleanField(default=False, index=True)
    errored = peewee.BooleanField(default=False)
    cancelled = peewee.BooleanField(default=False)
    dismissed = peewee.BooleanField(default=False)
    created_by = peewee.CharField(max_length=150, default="")


class Job(BaseModel):
    class_name = peewee.CharField(max_length=64)
    description = peewee.TextField(default="")
    state = peewee.CharField(max_length=16, default=PENDING)  # pending, tasked, complete
    errored = peewee.BooleanField(default=False)
    cancelled = peewee.BooleanField(default=False)
    created_at = peewee.DateTimeField(default=utcnow)
    modified_at = peewee.DateTimeField(default=utcnow)
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


class CommandJob(BaseModel):
    command = peewee.ForeignKeyField(Command, on_delete="CASCADE", index=True)
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)

    class Meta:
        indexes = ((("command", "job"), True),)


class JobWait(BaseModel):
    """``job`` may start only once ``waits_for`` is complete (whatever its outcome)."""

    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)
    waits_for = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)


class JobLock(BaseModel):
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=True)
    object_type = peewee.CharField(max_length=32)
    object_id = peewee.IntegerField()
    write = peewee.BooleanField()
    released = peewee.BooleanField(default=False)  # set when the job completes

    class Meta:
        indexes = ((("object_type", "object_id", "released"), False),)


class Step(BaseModel):
    job = peewee.ForeignKeyField(Job, on_delete="CASCADE", index=False)  # (job, id) below
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
    created_at = peewee.DateTimeField(default=utcnow)
    modified_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("job", "id"), False),)
