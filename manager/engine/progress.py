"""Moving jobs forward, on a database thread: claim runnable jobs, advance them step by step.

A job's progress is its step rows. ``advance`` is the one place a job moves: it records the
outcome of the running step and, in the same transaction, starts the next (inserting the
step row and its action row together), so a crash at any point leaves either the old step
waiting for its action or the new step with its action queued — never a step without its
action or an action run twice. Resuming a job after a restart is ``advance`` with no outcome:
it picks up the outcome of an action that finished meanwhile, or waits for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import traceback
from typing import Any

import peewee

from manager.db import fastsql
from manager.db.base import is_postgres, utcnow
from manager.db.engine import COMPLETE, PENDING, TASKED, Job, JobWait, Step
from manager.db.hosts import Action
from manager.db.unlocked import update_unlocked
from manager.domain.errors import NotFound, ValidationError
from manager.engine.commands import complete_job
from manager.engine.dispatch import UNFINISHED, ActionOutcome, action_statements
from manager.engine.registry import Registry, StepFailed, StepSpec
from manager.ops.redaction import redact

MAX_TEXT = 256 * 1024


@dataclasses.dataclass
class Next:
    """What the runner does next for a job: wait for ``action_id`` (delivering ``new_rows``
    first), or nothing (the job is complete)."""

    job_id: int
    action_id: str | None = None
    new_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    changes: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.action_id is None


# --- claiming ----------------------------------------------------------------------------

def claim(registry: Registry, instance: str, limit: int, lease: datetime.timedelta,
          reclaim_own: bool) -> list[int]:
    """Take up to ``limit`` runnable jobs for this manager: pending jobs whose ``wait_for``
    jobs are complete (their preconditions checked again: one that no longer holds cancels
    the job), and tasked jobs whose lease ran out (or that this manager held before a
    restart). Returns the ids claimed."""
    now = utcnow()
    database = Job._meta.database
    skip_locked = "FOR UPDATE SKIP LOCKED" if is_postgres(database) else None
    dep = Job.alias("dep")
    unfinished_waits = (JobWait.select(JobWait.id).join(dep, on=(JobWait.waits_for == dep.id))
                        .where(JobWait.job == Job.id, dep.state != COMPLETE))
    runnable = (Job.select().where(Job.state == PENDING, ~peewee.fn.EXISTS(unfinished_waits))
                .order_by(Job.id).limit(limit))
    orphaned = Job.lease_until < now
    if reclaim_own:
        orphaned |= Job.claimed_by == instance
    stale = Job.select().where(Job.state == TASKED, orphaned).order_by(Job.id).limit(limit)
    if skip_locked:
        runnable, stale = runnable.for_update(skip_locked), stale.for_update(skip_locked)
    claimed: list[int] = []
    with database.atomic():
        pending = list(runnable)
        blocked = _unmet_preconditions(registry, pending)
        for job in pending:
            if job.id in blocked:
                complete_job(registry, job, cancelled=True, log=blocked[job.id])
            else:
                claimed.append(job.id)
        claimed += [job.id for job in stale]
        if claimed:
            (Job.update(state=TASKED, claimed_by=instance, lease_until=now + lease, modified_at=now)
             .where(Job.id.in_(claimed)).execute())
    return claimed


def _unmet_preconditions(registry: Registry, jobs: list[Job]) -> dict[int, str]:
    """Why each job that can no longer run cannot (objects' states read in one query per
    class): a state job's object must still be where its transition leaves from, and what
    a job requires must hold; an offered job must still be offered."""
    wanted: dict[str, set[int]] = {}
    plans = []
    for job in jobs:
        job_class = registry.jobs.get(job.class_name)
        if job_class is None:
            plans.append((job, None, []))
            continue
        needs = list(job_class.requires(json.loads(job.args)))
        plans.append((job, job_class, needs))
        wanted.setdefault(job.object_type, set()).add(job.object_id)
        for need in needs:
            wanted.setdefault(need.key[0], set()).add(need.key[1])
    states = {(t, i): s for t, ids in wanted.items()
              for i, s in registry.stateful(t).states(sorted(ids)).items()}
    blocked: dict[int, str] = {}
    for job, job_class, needs in plans:
        key = (job.object_type, job.object_id)
        if job_class is None:
            blocked[job.id] = f"unknown job class {job.class_name} (a newer manager's?)"
        elif key not in states:
            blocked[job.id] = f"{key[0]} {key[1]} no longer exists"
        elif job.to_state is not None:
            transition = registry.stateful(key[0]).machine.transition_for(job.class_name)
            if transition is None or states[key] not in transition.from_states:
                blocked[job.id] = (f"not run: {key[0]} {key[1]} is {states[key]}, and "
                                   f"{job.class_name} starts from {job.from_state}")
        elif job_class.available is not None and not job_class.available(
                registry.stateful(key[0]).load(key[1])):
            blocked[job.id] = f"not run: {job.class_name} is no longer available"
        if job.id not in blocked:
            for need in needs:
                if states.get(need.key) not in need.acceptable:
                    blocked[job.id] = (f"not run: {need.key[0]} {need.key[1]} is "
                                       f"{states.get(need.key)}, needs {'/'.join(need.acceptable)}")
                    break
    return blocked


def renew(instance: str, job_ids: list[int], lease: datetime.timedelta) -> None:
    """Extend this manager's leases. A job row the engine's batch holds is being advanced
    right now: it is skipped (its lease has two more renewals before it runs out) rather
    than waited for, which deadlocked with the batch."""
    update_unlocked(Job, job_ids, {Job.lease_until: utcnow() + lease},
                    Job.claimed_by == instance, Job.state == TASKED)


# --- advancing ---------------------------------------------------------------------------

def advance(registry: Registry, new_rows: Any, job_id: int, outcome: ActionOutcome | None,
            audit_enabled: bool) -> Next:
    """Record ``outcome`` (of the job's running step) and start what comes next.

    ``new_rows(host_id, name, args, timeout, caused_by)`` makes action rows (the
    dispatcher's ``new_rows``). Runs inside the caller's transaction."""
    job, last, host_state = _job_and_last_step(job_id)
    if job is None or job.state == COMPLETE:
        return Next(job_id)
    run = _Advance(registry, new_rows, audit_enabled, job)
    if host_state is not None:  # a host's job: its actions need no second look at the host
        run.known_hosts[job.object_id] = host_state
    nxt = run.resume(last, outcome)
    run.flush()
    return nxt


@functools.lru_cache(maxsize=4)
def _job_and_step_sql(param: str, postgres: bool) -> str:
    """On PostgreSQL a LATERAL join: with ``s.id = (SELECT max(id) …)`` as the join condition,
    a planner without statistics yet (a new database's first minute) hashed the whole step
    table for every step; LATERAL can only probe the (job_id, id) index."""
    job_columns = ", ".join(f'j."{f.column_name}"' for f in Job._meta.sorted_fields)
    step_columns = ", ".join(f's."{f.column_name}"' for f in Step._meta.sorted_fields)
    latest = ("LEFT JOIN LATERAL (SELECT * FROM step WHERE job_id = j.id ORDER BY id DESC "
              "LIMIT 1) s ON true" if postgres else
              "LEFT JOIN step s ON s.id = (SELECT max(id) FROM step WHERE job_id = j.id)")
    return (f"SELECT {job_columns}, {step_columns}, (SELECT h.state FROM host h WHERE "
            f"j.object_type = 'host' AND h.id = j.object_id) FROM job j {latest} "
            f"WHERE j.id = {param}")


def _job_and_last_step(job_id: int) -> tuple[Job | None, Step | None, str | None]:
    """The job, its latest step and, for a host's job, the host's state: one query (each
    round trip saved is one less wait per step)."""
    database = Job._meta.database
    text = fastsql.prepared(database, _job_and_step_sql(database.param, is_postgres(database)))
    row = database.execute_sql(text, (job_id,)).fetchone()
    if row is None:
        return None, None, None
    job_fields, step_fields = Job._meta.sorted_fields, Step._meta.sorted_fields
    job = _model(Job, job_fields, row[:len(job_fields)])
    step_values = row[len(job_fields):len(job_fields) + len(step_fields)]
    step = _model(Step, step_fields, step_values) if step_values[0] is not None else None
    return job, step, row[-1]


def _model(model: type[Any], fields: list[Any], values: tuple[Any, ...]) -> Any:
    obj = model(**{f.name: f.python_value(v) for f, v in zip(fields, values, strict=True)})
    obj._dirty.clear()
    return obj


class _Results(list):
    """The results of a job's successful steps, read only if a manager-side step asks."""

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.loaded = False
        self.pending: list[Any] = []

    def append(self, value: Any) -> None:
        self.pending.append(value)

    def load(self) -> list[Any]:
        if not self.loaded:
            stored = [_loads(r) for (r,) in Step.select(Step.result).where(
                Step.job == self.job_id, Step.state == "success").order_by(Step.id).tuples()]
            self.extend(stored)
            self.loaded = True
            self.pending.clear()  # those were recorded before this read
        else:
            self.extend(self.pending)
            self.pending.clear()
        return list(self)


class _Advance:
    """One job's move, inside one transaction. Step outcomes are written with the next
    step's rows (one round trip on PostgreSQL), and before anything that may read them."""

    def __init__(self, registry: Registry, new_rows: Any, audit_enabled: bool, job: Job) -> None:
        self.registry = registry
        self.new_rows = new_rows
        self.audit_enabled = audit_enabled
        self.job = job
        self.job_class = registry.job(job.class_name)
        self.job_args = json.loads(job.args)
        self.specs = self.job_class.steps(self.job_args)
        self.results = _Results(job.id)
        self.database = Job._meta.database
        self.deferred: list[fastsql.Statement] = []
        self.known_hosts: dict[int, str] = {}  # host id → state, read with the job

    def flush(self) -> None:
        statements, self.deferred = self.deferred, []
        fastsql.execute_together(self.database, statements)

    def resume(self, last: Step | None, outcome: ActionOutcome | None) -> Next:
        if last is None:
            return self.start(0, 0)
        if last.state == "incomplete":
            if outcome is None or outcome.action_id != last.action_id:
                outcome = _stored_outcome(last.action_id)
            if outcome is None:
                return Next(self.job.id, action_id=last.action_id)  # still running: wait
            self.record(last, outcome)
            if not outcome.ok:
                return self.failed(last)
            self.results.append(outcome.result)
            return self.start(last.step_index + 1, 0)
        if last.state == "success":
            return self.start(last.step_index + 1, 0)
        return self.failed(last)

    def start(self, index: int, attempt: int) -> Next:
        """Run function steps from ``index`` on until an action step (started) or the end."""
        while index < len(self.specs):
            spec = self.specs[index]
            fields = {"job": self.job.id, "class_name": spec.class_name,
                      "description": spec.description,
                      "args": json.dumps(_shown_args(spec, self.job_args)), "step_index": index,
                      "step_count": len(self.specs), "attempt": attempt}
            if spec.action is not None:
                started = self.start_action(fields, spec)
                if isinstance(started, Next):
                    return started
                step = self.finished(fields, ActionOutcome("", "failed", None, started, []))
            else:
                self.flush()  # the function may read what this move recorded
                self.known_hosts.clear()  # and may change hosts (a removal does)
                step = self.finished(fields, *self.call(spec))
            if step.state != "success":
                return self.failed(step)
            self.results.append(_loads(step.result))
            index, attempt = index + 1, 0
        self.flush()
        return Next(self.job.id, changes=complete_job(self.registry, self.job))

    def call(self, spec: StepSpec) -> tuple[ActionOutcome, str]:
        """A manager-side step, in a savepoint (its failure undoes only its own writes):
        its outcome and, if it raised, the backtrace."""
        try:
            with self.database.atomic():
                result = spec.function(self.job_args, self.results.load())
            return ActionOutcome("", "succeeded", result, "", []), ""
        except StepFailed as exc:
            return ActionOutcome("", "failed", None, str(exc), []), ""
        except Exception as exc:  # noqa: BLE001 - a bug in a step fails the step, not the engine
            return (ActionOutcome("", "failed", None, f"{type(exc).__name__}: {exc}", []),
                    traceback.format_exc()[-MAX_TEXT:])

    def finished(self, fields: dict[str, Any], outcome: ActionOutcome, backtrace: str = ""
                 ) -> Step:
        """A step that ended within this move: one INSERT of its final row (with the
        move's other writes), not an INSERT and then an UPDATE."""
        row = {**fields, "backtrace": backtrace, "created_at": utcnow(),
               **_outcome_fields(outcome)}
        self.deferred += fastsql.insert_statements(Step, [row], prepare=True)
        return Step(**row)

    def start_action(self, fields: dict[str, Any], spec: StepSpec) -> Next | str:
        """Insert the step with its action (one transaction: never one without the other);
        a reason string when the action cannot be sent."""
        try:
            host_id = spec.host_of(self.job_args)
            args = spec.args(self.job_args)
        except StepFailed as exc:   # e.g. nothing left to act on, or no agent that can
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a bug in a step fails the step, not the engine
            return f"{spec.class_name} could not be prepared: {type(exc).__name__}: {exc}"
        if isinstance(host_id, bool) or not isinstance(host_id, int):
            return f"{spec.class_name} has no host to run on"
        try:
            rows = self.new_rows([host_id], spec.action, args, spec.timeout, self.job.created_by)
            actions = action_statements(rows, self.audit_enabled, self.known_hosts)
        except (NotFound, ValidationError) as exc:
            return f"cannot send {spec.action} to host {host_id}: {exc}"
        now = utcnow()
        step = fastsql.insert_statements(Step, [{**fields, "action_id": rows[0]["id"],
                                                 "host_id": host_id, "created_at": now,
                                                 "modified_at": now}], prepare=True)
        self.deferred += [*actions, *step]
        return Next(self.job.id, action_id=rows[0]["id"], new_rows=rows)

    def failed(self, step: Step) -> Next:
        if step.attempt < self.job_class.retries:
            return self.start(step.step_index, step.attempt + 1)
        self.flush()
        complete_job(self.registry, self.job, errored=True,
                     log=f"{step.class_name} failed: {step.log}".strip())
        return Next(self.job.id)

    def record(self, step: Step, outcome: ActionOutcome) -> None:
        """The outcome of a step whose row exists (an action step that was running)."""
        for name, value in _outcome_fields(outcome).items():
            setattr(step, name, value)
        self.deferred.append((fastsql.prepared(self.database, fastsql.sql(
            "UPDATE step SET state = ?, result = ?, log = ?, console = ?, backtrace = ?, "
            "modified_at = ? WHERE id = ?", Step)),
            [step.state, step.result, step.log, step.console, step.backtrace,
             Step.modified_at.db_value(step.modified_at), step.id]))


def _outcome_fields(outcome: ActionOutcome) -> dict[str, Any]:
    return {"state": "success" if outcome.ok else "failed",
            "result": json.dumps(outcome.result) if outcome.result is not None else None,
            "log": (outcome.error or ("done" if outcome.ok else "failed"))[:MAX_TEXT],
            "console": _console_text(outcome.console), "modified_at": utcnow()}


def _console_text(console: list[dict[str, Any]]) -> str:
    """IML's form: per process run, ``argv: rc`` then its stdout and stderr."""
    parts = [f"{' '.join(c.get('argv', []))}: {c.get('rc', 0)}\n{c.get('stdout', '')}\n"
             f"{c.get('stderr', '')}" for c in console]
    return "\n".join(parts)[:MAX_TEXT]


def _stored_outcome(action_id: str | None) -> ActionOutcome | None:
    if action_id is None:
        return ActionOutcome("", "failed", None, "the step's action was never sent", [])
    row = Action.get_or_none(Action.id == action_id)
    if row is None:
        return ActionOutcome(action_id, "failed", None, "the step's action was lost", [])
    if row.state in UNFINISHED:
        return None
    return ActionOutcome(row.id, row.state, _loads(row.result), row.error,
                         json.loads(row.console or "[]"))


def _shown_args(spec: StepSpec, job_args: dict[str, Any]) -> dict[str, Any]:
    try:
        step_args = spec.args(job_args) if spec.action else {}
    except Exception:  # noqa: BLE001 - the step fails when it starts, saying why
        step_args = {}
    args = {**job_args, **step_args}
    args = {k: v for k, v in args.items() if not k.startswith("__") and k not in spec.secret_args}
    return redact(args)


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else None
