"""``/api/command/``, ``/api/job/`` and ``/api/step/`` (iml-api.md): the engine's work."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from manager.db.engine import COMPLETE, Command, CommandJob, Job, JobLock, JobWait, Step
from manager.domain.accounts import Principal
from manager.domain.errors import ValidationError
from manager.domain.permissions import require_administrator
from manager.engine.commands import PlanError
from manager.engine.runner import Engine
from manager.http.iml.resource import Field, Resource, body_errors, iso

_ID = ("exact", "in")
_COMPARE = ("gte", "lte", "gt", "lt")
MESSAGE_ERROR = "A message of 1 to 1024 characters is required."
JOBS_ERROR = "A list of 1 to 10000 jobs is required."
# POST /api/command/: validated with this schema, and shown by the OpenAPI document
CREATE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["message", "jobs"], "additionalProperties": False,
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": r"\S",
                    "description": "What the command does, for people"},
        "jobs": {"type": "array", "minItems": 1, "maxItems": 10_000,
                 "description": "The jobs to run, each {\"class_name\": …, \"args\": {…}} "
                                "(the engine names a job it refuses by its index)"},
        "dry_run": {"type": "boolean", "description": "Answer the plan; run nothing"},
    },
}
_CREATE_MESSAGES = {"message": MESSAGE_ERROR, "jobs": JOBS_ERROR,
                    "dry_run": "Must be true or false."}


def plan_error(exc: PlanError) -> ValidationError:
    return ValidationError({exc.field: str(exc)})


def dry_run_requested(body: dict[str, Any]) -> bool:
    value = body.get("dry_run", False)
    if not isinstance(value, bool):
        raise ValidationError({"dry_run": "Must be true or false."})
    return value


class CommandResource(Resource):
    name = "command"
    model = Command
    description = ("Asynchronous user-initiated operations which create, remove or modify "
                   "resources; poll a command to find out whether it succeeded.")
    fields: ClassVar[dict[str, Field]] = {
        "cancelled": Field("boolean", "True if one or more of the command's jobs completed "
                                      "cancelled, or if the command was cancelled by the user",
                           readonly=False),
        "complete": Field("boolean", "True if all jobs have completed, or no jobs were needed"),
        "created_at": Field("datetime", "When the command was created"),
        "dismissed": Field("boolean", "True once a user has acknowledged the command",
                           readonly=False),
        "errored": Field("boolean", "True if one or more of the command's jobs failed"),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "jobs": Field("list", "Jobs belonging to this command"),
        "logs": Field("string", "Concatenation of all user-visible logs from the command's jobs"),
        "message": Field("string", "Human readable string about one sentence long describing "
                                   "the action being done by the command"),
        "resource_uri": Field("string", "URL for this object"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {
        "complete": ("exact",), "created_at": _COMPARE, "dismissed": ("exact",),
        "cancelled": ("exact",), "errored": ("exact",), "id": _ID}
    ordering = ("created_at",)
    list_methods = ("GET", "POST")
    detail_methods = ("GET", "PATCH")
    dry_run_methods = ("POST list",)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def body_schema(self, method: str, on_list: bool) -> dict[str, Any]:
        return CREATE_SCHEMA if on_list else super().body_schema(method, on_list)

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        if on_list:  # a dry run answers 200 with the plan
            return {201: "object", 200: "plan"}
        return super().write_responses(method, on_list)

    def serialize(self, objects: list[Command], principal: Principal | None) -> list[dict]:
        return render_commands(objects)

    def render_id(self, command_id: int) -> dict[str, Any]:
        return render_commands([Command.get_by_id(command_id)])[0]

    def create(self, principal: Principal, body: dict[str, Any]) -> tuple[int, dict]:
        """POST ``{"message", "jobs": [{"class_name", "args"}]}``: run available jobs."""
        require_administrator(principal, "run jobs")
        errors = body_errors(CREATE_SCHEMA, body, _CREATE_MESSAGES, _CREATE_MESSAGES)
        if errors:  # one at a time: unknown fields, then message, jobs, dry_run
            order = [*sorted(set(errors) - set(_CREATE_MESSAGES)), *_CREATE_MESSAGES]
            first = next(name for name in order if name in errors)
            raise ValidationError({first: errors[first]})
        try:
            result = self.engine.plan_jobs(body["jobs"], body["message"].strip(),
                                           principal.username, dry_run_requested(body))
        except PlanError as exc:
            raise plan_error(exc) from None
        if isinstance(result, dict):
            return 200, result
        return 201, self.render_id(result)

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, dict]:
        """PATCH ``{"cancelled": true}`` cancels the command's unfinished jobs;
        ``{"dismissed": true}`` acknowledges it."""
        require_administrator(principal, "change commands")
        self.check_fields(body)
        command = self.get_object(principal, obj_id)
        writable = {"cancelled", "dismissed"}
        read_only = sorted(set(body) - writable - {"id", "resource_uri"})
        if read_only and not set(body) & writable:  # a body echoing a read object is fine
            raise ValidationError({name: "Read-only: only cancelled and dismissed can be "
                                         "changed." for name in read_only})
        for name in writable & set(body):
            if not isinstance(body[name], bool):
                raise ValidationError({name: "Must be true or false."})
        if "dismissed" in body:
            Command.update(dismissed=body["dismissed"]).where(Command.id == command.id).execute()
        if body.get("cancelled") is True:
            self.engine.cancel_command(command.id)
        elif body.get("cancelled") is False and command.cancelled:
            raise ValidationError({"cancelled": "A cancelled command cannot be resumed."})
        return 200, self.render_id(command.id)


def render_commands(objects: list[Command]) -> list[dict[str, Any]]:
    ids = [c.id for c in objects]
    jobs: dict[int, list[int]] = {}
    logs: dict[int, list[str]] = {}
    if ids:
        for command_id, job_id, description, log in (
                CommandJob.select(CommandJob.command, Job.id, Job.description, Job.log)
                .join(Job).where(CommandJob.command.in_(ids)).order_by(Job.id).tuples()):
            jobs.setdefault(command_id, []).append(job_id)
            if log:
                logs.setdefault(command_id, []).append(f"{description}: {log}")
    return [{
        "cancelled": c.cancelled, "complete": c.complete, "created_at": iso(c.created_at),
        "dismissed": c.dismissed, "errored": c.errored, "id": c.id,
        "jobs": [JobResource.uri(j) for j in jobs.get(c.id, [])],
        "logs": "\n".join(logs.get(c.id, [])), "message": c.message,
        "resource_uri": CommandResource.uri(c.id),
    } for c in objects]


class JobResource(Resource):
    name = "job"
    model = Job
    description = ("Individual units of work that the server is doing, as part of one or "
                   "more commands; jobs of a command may run in parallel.")
    fields: ClassVar[dict[str, Field]] = {
        "available_transitions": Field("list", "List of {'verb':, 'state':} for possible states"),
        "cancelled": Field("boolean", "True if the job completed as a result of a user "
                                      "cancelling it, or never started because of a failed "
                                      "dependency"),
        "class_name": Field("string", "Internal class name of job"),
        "commands": Field("list", "Commands which require this job to complete successfully",
                          nullable=True),
        "created_at": Field("datetime", "When the job was created"),
        "description": Field("string", "Human readable string around one sentence long "
                                       "describing what the job is doing"),
        "errored": Field("boolean", "True if the job has completed with an error"),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "modified_at": Field("datetime", "When the job last changed"),
        "read_locks": Field("list", "Objects which must stay in the required state while this "
                                    "job runs", nullable=True),
        "resource_uri": Field("string", "URL for this object"),
        "state": Field("string", "One of ('pending', 'tasked', 'complete')", readonly=False),
        "step_results": Field("dict", "Results of the job's steps, by step URI"),
        "steps": Field("list", "Steps executed within this job", nullable=True),
        "wait_for": Field("list", "Other jobs which must complete before this job can run",
                          nullable=True),
        "write_locks": Field("list", "Objects which must be in a certain state for this job to "
                                     "run, and may be modified by it", nullable=True),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {"state": _ID, "id": _ID}
    ordering = ("created_at",)
    detail_methods = ("GET", "PUT")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write_responses(self, method: str, on_list: bool) -> dict[int, Any]:
        return {204: None}  # PUT {"state": "cancelled"}: the job is being cancelled

    def serialize(self, objects: list[Job], principal: Principal | None) -> list[dict]:
        ids = [j.id for j in objects]
        commands, waits, steps, locks = _related(ids)
        out = []
        for j in objects:
            job_class = self.engine.registry.jobs.get(j.class_name)
            cancellable = j.state != COMPLETE and (job_class is None or job_class.cancellable)
            content_type = self.engine.registry.content_type_id
            out.append({
                "available_transitions": [{"state": "cancelled", "label": "Cancel",
                                           "verb": "Cancel"}] if cancellable else [],
                "cancelled": j.cancelled, "class_name": j.class_name,
                "commands": [CommandResource.uri(c) for c in commands.get(j.id, [])],
                "created_at": iso(j.created_at), "description": j.description,
                "errored": j.errored, "id": j.id, "modified_at": iso(j.modified_at),
                "read_locks": [_lock(lk, content_type) for lk in locks.get(j.id, []) if not lk[3]],
                "resource_uri": self.uri(j.id), "state": j.state,
                "step_results": {StepResource.uri(s): _loads(r) for s, r in steps.get(j.id, [])},
                "steps": [StepResource.uri(s) for s, _ in steps.get(j.id, [])],
                "wait_for": [self.uri(w) for w in waits.get(j.id, [])],
                "write_locks": [_lock(lk, content_type) for lk in locks.get(j.id, []) if lk[3]],
            })
        return out

    def update(self, principal: Principal, obj_id: str, body: dict[str, Any]) -> tuple[int, None]:
        """PUT ``{"state": "cancelled"}`` cancels the job (and its running step's action)."""
        require_administrator(principal, "cancel jobs")
        self.check_fields(body)
        job = self.get_object(principal, obj_id)
        if body.get("state") != "cancelled":
            raise ValidationError({"state": "The only state a job can be set to is 'cancelled'."})
        try:
            self.engine.cancel_job(job.id)
        except PlanError as exc:
            raise plan_error(exc) from None
        return 204, None


def _related(ids: list[int]) -> tuple[dict, dict, dict, dict]:
    commands: dict[int, list[int]] = {}
    waits: dict[int, list[int]] = {}
    steps: dict[int, list[tuple[int, str | None]]] = {}
    locks: dict[int, list[tuple]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        for job_id, command_id in CommandJob.select(CommandJob.job, CommandJob.command).where(
                CommandJob.job.in_(chunk)).order_by(CommandJob.command).tuples():
            commands.setdefault(job_id, []).append(command_id)
        for job_id, other in JobWait.select(JobWait.job, JobWait.waits_for).where(
                JobWait.job.in_(chunk)).order_by(JobWait.waits_for).tuples():
            waits.setdefault(job_id, []).append(other)
        for job_id, step_id, result in Step.select(Step.job, Step.id, Step.result).where(
                Step.job.in_(chunk)).order_by(Step.id).tuples():
            steps.setdefault(job_id, []).append((step_id, result))
        for row in JobLock.select(JobLock.job, JobLock.id, JobLock.object_type, JobLock.object_id,
                                  JobLock.write).where(JobLock.job.in_(chunk)).tuples():
            locks.setdefault(row[0], []).append((row[1], row[2], row[3], row[4]))
    return commands, waits, steps, locks


def _lock(lock: tuple, content_type: Any) -> dict[str, Any]:
    lock_id, object_type, object_id, _ = lock
    return {"id": str(lock_id), "locked_item_id": object_id,
            "locked_item_content_type_id": content_type(object_type),
            "locked_item_type": object_type, "locked_item_uri": f"/api/{object_type}/{object_id}/"}


class StepResource(Resource):
    name = "step"
    model = Step
    description = ("A step of a job. Steps run in order and may be retried; the console "
                   "output may be large, so load steps only when needed.")
    fields: ClassVar[dict[str, Field]] = {
        "args": Field("dict", "The step's arguments (secrets removed)"),
        "backtrace": Field("string", "Backtrace of an exception, if one occurred"),
        "class_name": Field("string", "Name of the class representing this step"),
        "console": Field("string", "Combined output of every process the step ran"),
        "created_at": Field("datetime", "When the step started"),
        "description": Field("string", "What the step does"),
        "id": Field("integer", "Integer record identifier, unique for objects of this type"),
        "job": Field("related", "The job the step belongs to", to="job"),
        "log": Field("string", "Human readable summary of progress during execution"),
        "modified_at": Field("datetime", "When the step last changed"),
        "resource_uri": Field("string", "URL for this object"),
        "result": Field("string", "Arbitrary result data (JSON)", nullable=True),
        "state": Field("string", "One of incomplete, failed, success"),
        "step_count": Field("integer", "Number of steps in this job"),
        "step_index": Field("integer", "Zero-based index of this step within the steps of a job"),
    }
    filtering: ClassVar[dict[str, tuple[str, ...]]] = {"job": ("exact",), "id": _ID}
    ordering = ("created_at", "modified_at")

    def serialize(self, objects: list[Step], principal: Principal | None) -> list[dict]:
        return [{
            "args": _loads(s.args) or {}, "backtrace": s.backtrace, "class_name": s.class_name,
            "console": s.console, "created_at": iso(s.created_at), "description": s.description,
            "id": s.id, "job": JobResource.uri(s.job_id), "log": s.log,
            "modified_at": iso(s.modified_at), "resource_uri": self.uri(s.id), "result": s.result,
            "state": s.state, "step_count": s.step_count, "step_index": s.step_index,
        } for s in objects]


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
