"""What the engine knows about a domain: its stateful classes and its job classes.

A domain (hosts now; later LNet, targets, file systems, power) declares each stateful class
once — its state machine and how to read and write the state of its rows — and each job
class — its steps, what it requires of other objects, whether it can be cancelled. The
engine plans and runs from these declarations and never imports a domain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from manager.engine.planning import ObjectKey, Requirement
from manager.engine.statemachine import StateMachine

Args = dict[str, Any]


class StepFailed(Exception):
    """A manager-side step failed for an expected reason; the message is the step's log."""


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """One step of a job: an agent action through dispatch, or a manager-side function.

    ``args`` builds the step's arguments from the job's; ``host`` names the job argument
    holding the id of the host whose agent runs the action, or finds it from the job's
    arguments (a target's step runs on the host that serves it). A function step runs on a
    database thread inside the transaction that records its outcome; it gets the job's
    arguments and the results of the job's earlier steps, returns a result or raises
    ``StepFailed``. Every step must be idempotent: after a restart it may run again."""

    class_name: str
    description: str
    action: str | None = None
    function: Callable[[Args, list[Any]], Any] | None = None
    args: Callable[[Args], Args] = lambda job_args: {}
    host: str | Callable[[Args], int] = "host_id"
    timeout: float = 300.0
    secret_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.action is None) == (self.function is None):
            raise ValueError(f"{self.class_name}: a step is an action or a function, not both")

    def host_of(self, job_args: Args) -> Any:
        """The id of the host that runs this step's action (None if the job names none)."""
        return self.host(job_args) if callable(self.host) else job_args.get(self.host)


@dataclasses.dataclass(frozen=True)
class JobClass:
    """A kind of job. A state-change job is named in its class's state machine; any other
    job is offered in ``available_jobs`` where ``available`` says so."""

    name: str
    object_type: str
    description: str  # formatted with the object's label: "Set up host {label}"
    steps: Callable[[Args], list[StepSpec]]
    verb: str | None = None
    long_description: str = ""
    confirmation: str | None = None
    available: Callable[[Any], bool] | None = None  # non-state jobs: offered for this row?
    display_order: int = 100
    retries: int = 0
    cancellable: bool = True
    requires: Callable[[Args], Iterable[Requirement]] = lambda args: ()
    sets_state: str | None = None  # a non-state job that still leaves its object in a state
    preempts: bool = False  # cancels every unfinished job locking its object when planned


@dataclasses.dataclass(frozen=True)
class StatefulClass:
    """A class of objects with a state machine: hosts, later LNet, targets, file systems.

    ``states`` and ``set_state`` run on a database thread; ``label`` and ``args`` describe
    an object for job descriptions and job arguments."""

    name: str
    content_type_id: int
    machine: StateMachine
    states: Callable[[list[int]], dict[int, str]]
    set_state: Callable[[int, str], None]
    labels: Callable[[list[int]], dict[int, str]]
    load: Callable[[int], Any]  # the row (None if it does not exist), for available jobs
    id_arg: str  # the job argument naming the object ("host_id")
    load_many: Callable[[list[int]], dict[int, Any]] | None = None  # rows by id, one query

    def rows(self, ids: list[int]) -> dict[int, Any]:
        """The existing rows of ``ids`` by id (one query when the class can)."""
        if self.load_many is not None:
            return self.load_many(ids)
        return {i: row for i in ids if (row := self.load(i)) is not None}


class UnknownJob(LookupError):
    pass


class Registry:
    def __init__(self) -> None:
        self.classes: dict[str, StatefulClass] = {}
        self.jobs: dict[str, JobClass] = {}

    def add_class(self, cls: StatefulClass) -> None:
        self.classes[cls.name] = cls

    def add_job(self, job: JobClass) -> None:
        if job.name in self.jobs:
            raise ValueError(f"job class {job.name} declared twice")
        self.jobs[job.name] = job

    def job(self, name: str) -> JobClass:
        try:
            return self.jobs[name]
        except KeyError:
            raise UnknownJob(name) from None

    def stateful(self, name: str) -> StatefulClass:
        return self.classes[name]

    def machine_of(self, key: ObjectKey) -> StateMachine:
        return self.classes[key[0]].machine

    def requirements_of(self, key: ObjectKey, current: str, to_state: str) -> list[Requirement]:
        transition = self.machine_of(key).route(current, to_state)[-1]
        job = self.job(transition.job)
        return list(job.requires(self.job_args(key, {})))

    def job_args(self, key: ObjectKey, extra: Args) -> Args:
        return {self.classes[key[0]].id_arg: key[1], **extra}

    def content_type_id(self, object_type: str) -> int:
        cls = self.classes.get(object_type)
        return cls.content_type_id if cls else 0

    def non_state_jobs(self, object_type: str) -> list[JobClass]:
        return sorted((j for j in self.jobs.values()
                       if j.object_type == object_type and j.available is not None),
                      key=lambda j: (j.display_order, j.name))


#: The registry the manager runs with; domain modules add their classes at import.
default = Registry()
