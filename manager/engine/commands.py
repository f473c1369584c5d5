"""Commands as rows: plan a request into jobs with locks, preview it, cancel it, complete it.

Everything here runs on a database thread. Planning holds one lock for the whole plan (the
write transaction on SQLite, an advisory lock on PostgreSQL) because ``wait_for`` is derived
from the locks of every unfinished job: two commands planned at once would each miss the
other's locks. Running the jobs is ``runner.py``'s work; this module keeps their rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import peewee

from manager.db import fastsql
from manager.db.base import is_postgres, utcnow
from manager.db.engine import (
    COMPLETE,
    PENDING,
    TASKED,
    Command,
    CommandJob,
    Job,
    JobLock,
    JobWait,
    Step,
)
from manager.domain import alerts
from manager.engine.planning import LockTable, ObjectKey, PlannedJob, plan
from manager.engine.registry import Args, JobClass, Registry, StepFailed, UnknownJob
from manager.engine.statemachine import InvalidTransition

_PLAN_LOCK = 0x5E9E_0002  # PostgreSQL advisory lock key held while planning
COMMAND_ALERTS = ("CommandRunningAlert", "CommandSuccessfulAlert", "CommandErroredAlert",
                  "CommandCancelledAlert")


class PlanError(ValueError):
    """A request that cannot be planned; ``field`` says which part of it (IML's error key)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclasses.dataclass
class Planned:
    """A plan before it is stored: the jobs (new ones with temporary ids) and, for a request
    already covered by queued jobs, those jobs."""

    message: str
    jobs: list[PlannedJob]
    args: dict[int, Args]
    joined: list[int]  # ids of queued jobs the command joins instead of planning anew
    locks: LockTable


# --- planning ----------------------------------------------------------------------------

def load_locks(registry: Registry) -> LockTable:
    """The lock table of every unfinished job, oldest first."""
    locks = LockTable()
    rows = list(Job.select(Job.id, Job.class_name, Job.object_type, Job.object_id, Job.from_state,
                           Job.to_state).where(Job.state != COMPLETE).order_by(Job.id).tuples())
    held: dict[int, tuple[set[ObjectKey], set[ObjectKey]]] = {r[0]: (set(), set()) for r in rows}
    if held:
        for job_id, object_type, object_id, write in (
                JobLock.select(JobLock.job, JobLock.object_type, JobLock.object_id, JobLock.write)
                .where(JobLock.released == False).tuples()):
            if job_id in held:
                held[job_id][1 if write else 0].add((object_type, object_id))
    for job_id, class_name, object_type, object_id, from_state, to_state in rows:
        reads, writes = held[job_id]
        locks.add(PlannedJob(job_id, class_name, (object_type, object_id), from_state, to_state,
                             None, reads=reads, writes=writes))
    locks.next_id = (Job.select(peewee.fn.MAX(Job.id)).scalar() or 0) + 1
    return locks


class StateCache:
    """Object states read once per plan."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.states: dict[ObjectKey, str] = {}

    def prefetch(self, keys: Iterable[ObjectKey]) -> None:
        """Read the states of ``keys`` in one query per class (missing ones fail later)."""
        by_type: dict[str, list[int]] = {}
        for object_type, object_id in keys:
            if (object_type, object_id) not in self.states:
                by_type.setdefault(object_type, []).append(object_id)
        for object_type, ids in by_type.items():
            found = self.registry.stateful(object_type).states(list(dict.fromkeys(ids)))
            self.states.update({(object_type, i): state for i, state in found.items()})

    def __call__(self, key: ObjectKey) -> str:
        if key not in self.states:
            found = self.registry.stateful(key[0]).states([key[1]])
            if key[1] not in found:
                raise PlanError("id", f"{key[0]} {key[1]} does not exist")
            self.states[key] = found[key[1]]
        return self.states[key]


def plan_state_change(registry: Registry, key: ObjectKey, target: str) -> Planned | None:
    """The jobs taking ``key`` to ``target``; None when it is there with nothing queued.
    Raises InvalidTransition or PlanError."""
    cls = registry.stateful(key[0])
    states = StateCache(registry)
    current = states(key)
    locks = load_locks(registry)
    if current in cls.machine.immutable_states:
        raise InvalidTransition(current, target, [])
    projected = locks.projected_state(key, current)
    label = cls.labels([key[1]]).get(key[1], str(key[1]))
    if projected == target:
        writer = [j.id for j in locks.holders(key) if j.key == key and j.to_state == target]
        if not writer:
            return None  # there already, and nothing queued will move it
        return Planned(f"{_verb_for(key, target)} {label}", [], {}, writer[-1:], locks)
    allowed = [t["state"] for t in cls.machine.available(projected)]
    if target not in cls.machine.states():
        raise InvalidTransition(current, target, allowed, projected)
    try:
        jobs = plan(locks, key, target, states, registry.machine_of, registry.requirements_of)
    except InvalidTransition as exc:
        if exc.current != projected:
            raise  # a requirement of another object cannot be met: its own message says so
        raise InvalidTransition(current, target, allowed, projected) from None
    message = f"{_verb_for(key, target, jobs)} {label}"
    return Planned(message, jobs, {j.id: registry.job_args(j.key, {}) for j in jobs}, [], locks)


Requested = tuple[JobClass, ObjectKey, Args]
MAX_ID = 2**63 - 1  # the id columns' range: a larger number is no object, not a crash


def check_requests(registry: Registry, requests: list[Any]) -> list[Requested]:
    """Each requested job (``POST /api/command/``) is an available job of an existing
    object; raises PlanError naming the first that is not. The objects are read in one
    query per class (a command of 1,000 jobs is 1,000 objects)."""
    shaped = [_requested_shape(registry, request, index)
              for index, request in enumerate(requests)]
    wanted: dict[str, list[int]] = {}
    for job_class, object_id, _ in shaped:
        wanted.setdefault(job_class.object_type, []).append(object_id)
    rows = {name: registry.stateful(name).rows(list(dict.fromkeys(ids)))
            for name, ids in wanted.items()}
    checked = []
    for index, (job_class, object_id, job_args) in enumerate(shaped):
        name = registry.stateful(job_class.object_type).name
        row = rows[job_class.object_type].get(object_id)
        if row is None:
            raise PlanError("jobs", f"jobs[{index}]: {name} {object_id} does not exist")
        if not job_class.available(row):
            raise PlanError("jobs", f"jobs[{index}]: {job_class.name} is not available for "
                                    f"{name} {object_id}")
        checked.append((job_class, (name, object_id), job_args))
    return checked


def plan_jobs(registry: Registry, requests: list[Requested], message: str) -> Planned:
    """Plan checked requested jobs; what they require of other objects is planned ahead
    of them."""
    locks = load_locks(registry)
    states = StateCache(registry)
    states.prefetch(need.key for job_class, _, job_args in requests
                    for need in job_class.requires(job_args))
    planned: list[PlannedJob] = []
    args: dict[int, Args] = {}
    for job_class, key, job_args in requests:
        for need in job_class.requires(job_args):
            if locks.projected_state(need.key, states(need.key)) not in need.acceptable:
                before = plan(locks, need.key, need.preferred, states, registry.machine_of,
                              registry.requirements_of)
                planned += before
                args.update({j.id: registry.job_args(j.key, {}) for j in before})
        job = PlannedJob(locks.next_id, job_class.name, key, None, None, job_class.verb,
                         reads={n.key for n in job_class.requires(job_args)}, writes={key})
        locks.add(job)
        planned.append(job)
        args[job.id] = job_args
    return Planned(message, planned, args, [], locks)


def _requested_shape(registry: Registry, request: Any, index: int
                     ) -> tuple[JobClass, int, Args]:
    """A requested job's class, object id and args, checked for form only."""
    where = f"jobs[{index}]"
    if not isinstance(request, dict) or not isinstance(request.get("class_name"), str):
        raise PlanError("jobs", f"{where}: each job is an object with class_name and args")
    try:
        job_class = registry.job(request["class_name"])
    except UnknownJob:
        raise PlanError("jobs", f"{where}: unknown job class {request['class_name']!r}") from None
    job_args = request.get("args") or {}
    if not isinstance(job_args, dict):
        raise PlanError("jobs", f"{where}: args must be an object")
    if job_class.available is None:
        raise PlanError("jobs", f"{where}: {job_class.name} changes state; PUT the object's "
                                "state instead")
    cls = registry.stateful(job_class.object_type)
    object_id = job_args.get(cls.id_arg)
    if isinstance(object_id, bool) or not isinstance(object_id, int) or not 0 < object_id <= MAX_ID:
        raise PlanError("jobs", f"{where}: args.{cls.id_arg} must be a positive integer id")
    return job_class, object_id, dict(job_args)


def _verb_for(key: ObjectKey, target: str,
              jobs: list[PlannedJob] | None = None) -> str:
    own = [j for j in jobs or [] if j.key == key]
    if own and own[-1].verb:
        return own[-1].verb
    return f"Change {key[0]} state to {target} for"


# --- storing a plan ------------------------------------------------------------------------

def store(registry: Registry, planned: Planned, created_by: str) -> int:
    """Write the command, its jobs, waits and locks; returns the command's id."""
    now = utcnow()
    command = Command.create(message=planned.message, created_at=now, created_by=created_by)
    labels = _labels(registry, {j.key for j in planned.jobs})
    rows = [{"class_name": job.job, "state": PENDING, "created_at": now, "modified_at": now,
             "description": registry.job(job.job).description.format(label=labels[job.key]),
             "args": json.dumps(planned.args[job.id]), "object_type": job.key[0],
             "object_id": job.key[1], "from_state": job.from_state, "to_state": job.to_state,
             "created_by": created_by[:150]} for job in planned.jobs]
    ids = dict(zip([j.id for j in planned.jobs], _insert_jobs(rows), strict=True))

    def real(planned_id: int) -> int:  # queued jobs keep their ids
        return ids.get(planned_id, planned_id)

    waits = [{"job": ids[j.id], "waits_for": real(w)} for j in planned.jobs for w in j.wait_for]
    locks = [{"job": ids[j.id], "object_type": k[0], "object_id": k[1], "write": write}
             for j in planned.jobs
             for write, keys in ((True, j.writes), (False, j.reads - j.writes)) for k in keys]
    members = [{"command": command.id, "job": i} for i in [*ids.values(), *planned.joined]]
    for model, rows in ((JobWait, waits), (JobLock, locks), (CommandJob, members)):
        for start in range(0, len(rows), 500):
            model.insert_many(rows[start:start + 500]).execute()
    if not members:
        Command.update(complete=True).where(Command.id == command.id).execute()
    else:
        alerts.raise_alert("CommandRunningAlert", alerts.INFO, f"Command running: {planned.message}",
                           "command", command.id, planned.message[:255])
    return command.id


def _insert_jobs(rows: list[dict[str, Any]]) -> list[int]:
    """Insert job rows; their ids in order. PostgreSQL takes 500 rows per statement (its
    ``RETURNING`` gives the ids of a multi-row ``VALUES`` in their order); SQLite, in process,
    one statement per row."""
    if not is_postgres(Job._meta.database):
        return [Job.insert(**row).execute() for row in rows]
    ids: list[int] = []
    for start in range(0, len(rows), 500):
        ids += [r[0] for r in Job.insert_many(rows[start:start + 500])
                .returning(Job.id).tuples().execute()]
    return ids


def _labels(registry: Registry, keys: Iterable[ObjectKey]) -> dict[ObjectKey, str]:
    by_type: dict[str, list[int]] = {}
    for object_type, object_id in keys:
        by_type.setdefault(object_type, []).append(object_id)
    labels = {}
    for object_type, object_ids in by_type.items():
        found = registry.stateful(object_type).labels(object_ids)
        labels.update({(object_type, i): found.get(i, str(i)) for i in object_ids})
    return labels


def serialize_planning(database: peewee.Database) -> None:
    """Inside a transaction: wait for any other planner (a second manager on PostgreSQL;
    SQLite's write transaction is already exclusive)."""
    if is_postgres(database):
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PLAN_LOCK,))


# --- preview -------------------------------------------------------------------------------

def preview(registry: Registry, planned: Planned) -> dict[str, Any]:
    """What a request would do, without doing it: jobs in order with their steps, the
    objects and hosts touched, and the commands it would wait behind."""
    labels = _labels(registry, {j.key for j in planned.jobs})
    order = {j.id: n for n, j in enumerate(planned.jobs)}
    queued = {w for j in planned.jobs for w in j.wait_for if w not in order} | set(planned.joined)
    behind = _commands_of(queued)
    jobs, hosts = [], set()
    for job in planned.jobs:
        job_class = registry.job(job.job)
        job_args = planned.args[job.id]
        steps = job_class.steps(job_args)
        problems: dict[str, str] = {}       # step class → why it would fail if run now
        for s in steps:
            if s.action:
                try:
                    host = s.host_of(job_args)
                except StepFailed as exc:
                    problems[s.class_name] = str(exc)
                    continue
                if isinstance(host, int) and not isinstance(host, bool):
                    hosts.add(host)
        cls = registry.stateful(job.key[0])
        jobs.append({
            "class_name": job.job, "description": job_class.description.format(label=labels[job.key]),
            "object": {"type": job.key[0], "id": job.key[1], "label": labels[job.key],
                       "content_type_id": cls.content_type_id},
            "from_state": job.from_state, "to_state": job.to_state,
            "steps": [{"class_name": s.class_name, "description": s.description,
                       "runs_on": "agent" if s.action else "manager", "action": s.action,
                       **({"problem": problems[s.class_name]}
                          if s.class_name in problems else {})} for s in steps],
            "wait_for": sorted(f"job {order[w]}" if w in order else f"queued job {w}"
                               for w in job.wait_for),
            "cancellable": job_class.cancellable,
        })
    host_class = registry.classes.get("host")
    host_labels = host_class.labels(sorted(hosts)) if hosts and host_class else {}
    transition = jobs[-1] if jobs else None
    return {
        "dry_run": True, "message": planned.message, "jobs": jobs,
        "objects": sorted(({"type": k[0], "id": k[1], "label": labels[k]}
                           for k in {j.key for j in planned.jobs}),
                          key=lambda o: (o["type"], o["id"])),
        "hosts": [{"id": h, "fqdn": host_labels.get(h, str(h))} for h in sorted(hosts)],
        "waits_behind": behind,
        # IML's own dry_run answer, for clients written against it
        "transition_job": transition and {"class_name": transition["class_name"],
                                          "description": transition["description"],
                                          "requires_confirmation": False,
                                          "confirmation_prompt": None},
        "dependency_jobs": [{"class": j["class_name"], "description": j["description"],
                             "requires_confirmation": False} for j in jobs[:-1]],
    }


def _commands_of(job_ids: set[int]) -> list[dict[str, Any]]:
    if not job_ids:
        return []
    rows = (Command.select(Command.id, Command.message).join(CommandJob)
            .where(CommandJob.job.in_(list(job_ids)), Command.complete == False)
            .distinct().order_by(Command.id).tuples())
    return [{"id": i, "message": m, "resource_uri": f"/api/command/{i}/"} for i, m in rows]


# --- completion and cancellation -------------------------------------------------------------

def complete_job(registry: Registry, job: Job, errored: bool = False, cancelled: bool = False,
                 log: str = "") -> list[tuple[str, int, str]]:
    """Finish a job (its state change applied on success), release its locks and complete
    the commands it ends. Returns the (type, id, new state) changes made.

    Runs once per finished job, so its statements are hand-written and prepared (peewee
    took longer to build them than the database took to run them)."""
    database = Job._meta.database
    params = [COMPLETE, errored, cancelled, Job.modified_at.db_value(utcnow())]
    if log:
        params.append((job.log + "\n" + log).strip())
    done = database.execute_sql(fastsql.prepared(database, fastsql.sql(
        "UPDATE job SET state = ?, errored = ?, cancelled = ?, modified_at = ?, "
        f"{'log = ?, ' if log else ''}claimed_by = NULL, lease_until = NULL "
        "WHERE id = ? AND state <> ?", Job)), [*params, job.id, COMPLETE]).rowcount
    if not done:
        return []
    database.execute_sql(fastsql.prepared(database, fastsql.sql(
        "UPDATE job_lock SET released = ? WHERE job_id = ?", JobLock)), [True, job.id])
    changes = []
    if not errored and not cancelled:
        job_class = registry.jobs.get(job.class_name)
        new_state = job.to_state or (job_class.sets_state if job_class else None)
        if new_state:
            registry.stateful(job.object_type).set_state(job.object_id, new_state)
            changes.append((job.object_type, job.object_id, new_state))
    _complete_commands(job.id)
    return changes


#: the commands of a job that are not complete but have no unfinished job left
_FINISHED_COMMANDS = (
    "SELECT c.id, c.message, c.cancelled FROM command c "
    "JOIN command_job mine ON mine.command_id = c.id "
    "WHERE mine.job_id = ? AND c.complete = ? AND NOT EXISTS ("
    "SELECT 1 FROM job j JOIN command_job members ON members.job_id = j.id "
    "WHERE j.state IN (?, ?) AND members.command_id = c.id) ORDER BY c.id")


def _complete_commands(job_id: int) -> None:
    """Complete the commands of a finished job that have no unfinished job left: one query
    when none has (the usual case). Unfinished jobs are found through the (state, id)
    index, so the cost does not grow with a command's size."""
    database = Command._meta.database
    # not prepared: a generic plan made while the tables were small hashed every command
    # (checked as tests/unit/engine/test_latest_step_query.py checks the others); planned
    # anew, it follows their size
    finished = database.execute_sql(fastsql.sql(_FINISHED_COMMANDS, Command),
                                    [job_id, False, PENDING, TASKED]).fetchall()
    for command_id, message, command_cancelled in finished:
        members = Job.select(Job.id).join(CommandJob).where(CommandJob.command == command_id)
        errored = members.where(Job.errored == True).exists()
        cancelled = bool(command_cancelled) or members.where(Job.cancelled == True).exists()
        Command.update(complete=True, errored=errored, cancelled=cancelled).where(
            Command.id == command_id).execute()
        alerts.end_alert("CommandRunningAlert", "command", command_id)
        if errored:
            kind, severity, word = "CommandErroredAlert", alerts.ERROR, "failed"
        elif cancelled:
            kind, severity, word = "CommandCancelledAlert", alerts.ERROR, "cancelled"
        else:
            kind, severity, word = "CommandSuccessfulAlert", alerts.INFO, "succeeded"
        alerts.raise_alert(kind, severity, f"Command {word}: {message}", "command",
                           command_id, message[:255])
        if severity == alerts.INFO:  # a success is news, not a condition: it ends at once
            alerts.end_alert(kind, "command", command_id)


def preempt(registry: Registry, requests: list[Requested]) -> list[str]:
    """Before planning jobs that preempt (Force Remove): cancel every unfinished job
    locking their objects. Returns the action ids to stop."""
    stop: list[str] = []
    for job_class, (object_type, object_id), _ in requests:
        if not job_class.preempts:
            continue
        held = (JobLock.select(JobLock.job).join(Job)
                .where(JobLock.object_type == object_type, JobLock.object_id == object_id,
                       JobLock.released == False, Job.state != COMPLETE).distinct())
        for (job_id,) in held.tuples():
            stop += cancel_job(registry, job_id, force=True,
                               why=f"cancelled: {job_class.name} took over")
    return stop


def cancel_job(registry: Registry, job_id: int, force: bool = False,
               why: str = "cancelled by request") -> list[str]:
    """Cancel an unfinished job; returns the action ids of its running step to stop."""
    job = Job.get_or_none(Job.id == job_id)
    if job is None:
        raise PlanError("id", f"job {job_id} does not exist")
    job_class = registry.jobs.get(job.class_name)
    if job.state == COMPLETE:
        raise PlanError("state", f"job {job_id} is complete and cannot be cancelled")
    if job_class is not None and not job_class.cancellable and not force:
        raise PlanError("state", f"{job.class_name} cannot be cancelled once planned")
    running = [a for (a,) in Step.select(Step.action_id).where(
        Step.job == job_id, Step.state == "incomplete", Step.action_id.is_null(False)).tuples()]
    complete_job(registry, job, cancelled=True, log=why)
    return running


def cancel_command(registry: Registry, command_id: int) -> list[str]:
    """Cancel every unfinished, cancellable job of a command; the action ids to stop."""
    command = Command.get_or_none(Command.id == command_id)
    if command is None:
        raise PlanError("id", f"command {command_id} does not exist")
    if command.complete:
        return []
    Command.update(cancelled=True).where(Command.id == command_id).execute()
    stop: list[str] = []
    for (job_id,) in (Job.select(Job.id).join(CommandJob)
                      .where(CommandJob.command == command_id, Job.state != COMPLETE).tuples()):
        job_class = registry.jobs.get(Job.get_by_id(job_id).class_name)
        if job_class is None or job_class.cancellable:
            stop += cancel_job(registry, job_id)
    return stop
