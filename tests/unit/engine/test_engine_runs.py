"""The engine with its rows: commands planned, run, failed, retried, cancelled and resumed.

A real database (SQLite in a temporary directory) and the real dispatcher; the only
stand-in is the agent side of the transport, which runs each delivered action by name in
this process and hands the result to the dispatcher as the gRPC servicer would.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Self

import peewee
import pytest

from manager.db import base as dbbase
from manager.db.engine import Command, Job, JobLock, JobWait, Step
from manager.db.executor import DatabaseExecutor
from manager.db.hosts import Action, Alert, Host, ServerProfile
from manager.db.migrations import migrate
from manager.engine import commands, offers
from manager.engine.dispatch import Dispatcher, IncomingResult
from manager.engine.planning import Requirement
from manager.engine.registry import (
    JobClass,
    Registry,
    StatefulClass,
    StepFailed,
    StepSpec,
)
from manager.engine.runner import Engine
from manager.engine.statemachine import InvalidTransition, StateMachine, Transition

WIDGET = StateMachine("widget", "off", (
    Transition(("off",), "TurnOnJob", "on", "Turn on"),
    Transition(("on",), "TurnOffJob", "off", "Turn off"),
))
SUPPLY = StateMachine("supply", "off", (
    Transition(("off",), "SupplyOnJob", "on", "Switch on"),
    Transition(("on",), "SupplyOffJob", "off", "Switch off"),
))


def in_loop(test: Callable[..., Coroutine]) -> Callable[..., None]:
    """Run an async test in its own event loop (fixtures still resolve by name)."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))
    return run


class World:
    """Objects' states (kept in memory: the engine only sees them through its registry)."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, int], str] = {}

    def stateful(self, name: str, machine: StateMachine, content_type: int) -> StatefulClass:
        def states(ids: list[int]) -> dict[int, str]:
            return {i: self.states[(name, i)] for i in ids if (name, i) in self.states}

        def set_state(object_id: int, state: str) -> None:
            self.states[(name, object_id)] = state

        def load(object_id: int) -> Any:
            if (name, object_id) not in self.states:
                return None
            return type("Row", (), {"id": object_id, "state": self.states[(name, object_id)]})

        return StatefulClass(name, content_type, machine, states, set_state,
                             lambda ids: {i: f"{name}-{i}" for i in ids}, load, f"{name}_id")


class Agents:
    """The agent side of the transport: runs actions by name, or holds them when told."""

    def __init__(self) -> None:
        self.dispatcher: Dispatcher | None = None
        self.handlers: dict[str, Any] = {
            "test.ok": lambda args: {"ok": True, **args},
            "test.fail": lambda args: RuntimeError("the widget jammed"),
        }
        self.executed: list[tuple[str, str]] = []  # (action id, name)
        self.held: dict[str, Any] = {}
        self.hold = False
        self.cancelled: list[str] = []
        self.failures_left: dict[str, int] = {}

    def is_connected(self, host_id: int) -> bool:
        return True

    def deliver(self, host_id: int, specs: list[Any]) -> bool:
        for spec in specs:
            if self.hold:
                self.held[spec.id] = (host_id, spec)
            else:
                asyncio.get_running_loop().create_task(self.answer(host_id, spec))
        return True

    def cancel(self, host_id: int, action_id: str) -> None:
        self.cancelled.append(action_id)

    async def answer(self, host_id: int, spec: Any) -> None:
        self.executed.append((spec.id, spec.name))
        args = json.loads(spec.args_json)
        outcome = self.handlers[spec.name](args)
        if self.failures_left.get(spec.name, 0) > 0:
            self.failures_left[spec.name] -= 1
            outcome = RuntimeError("transient failure")
        ok = not isinstance(outcome, Exception)
        await self.dispatcher.store_result(host_id, IncomingResult(
            spec.id, ok, json.dumps(outcome) if ok else "", "" if ok else str(outcome),
            [{"argv": ["widgetctl", spec.name], "rc": 0 if ok else 1, "stdout": "out",
              "stderr": "" if ok else "jammed"}]))


def _function_step(args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    if args.get("refuse"):
        raise StepFailed("refused by the manager-side step")
    return {"previous": results[-1] if results else None}


def AGENT_HOST(job_args: dict[str, Any]) -> int:
    return 1  # every action runs on the one host row the fixture creates


def make_registry(world: World) -> Registry:
    registry = Registry()
    registry.add_class(world.stateful("widget", WIDGET, 101))
    registry.add_class(world.stateful("supply", SUPPLY, 102))
    ok = StepSpec("OkStep", "runs test.ok", action="test.ok", host=AGENT_HOST,
                  args=lambda a: {"widget": a.get("widget_id", a.get("supply_id"))})
    after = StepSpec("RecordStep", "manager side", function=_function_step)

    def widget_needs(args: dict[str, Any]) -> list[Requirement]:
        return [Requirement(("supply", args["widget_id"] // 10), ("on",), "on")]

    registry.add_job(JobClass("TurnOnJob", "widget", "Turn on {label}", lambda a: [ok, after],
                              requires=widget_needs))
    registry.add_job(JobClass("TurnOffJob", "widget", "Turn off {label}", lambda a: [ok]))
    registry.add_job(JobClass("SupplyOnJob", "supply", "Switch on {label}", lambda a: [
        StepSpec("SwitchStep", "switch", action=world.supply_action, host=AGENT_HOST)]))
    registry.add_job(JobClass("SupplyOffJob", "supply", "Switch off {label}", lambda a: [ok]))
    registry.add_job(JobClass("PolishJob", "widget", "Polish {label}", lambda a: [ok, after],
                              verb="Polish", available=lambda row: row.state == "on",
                              requires=lambda a: [Requirement(("supply", a["widget_id"] // 10),
                                                              ("on",), "on")]))
    registry.add_job(JobClass("FlakyJob", "widget", "Flaky {label}",
                              lambda a: [StepSpec("FlakyStep", "flaky", action="test.flaky",
                                                  host=AGENT_HOST)],
                              verb="Flaky", available=lambda row: True, retries=1))
    registry.add_job(JobClass("RefusedJob", "widget", "Refused {label}",
                              lambda a: [StepSpec("RefuseStep", "refuse", function=_function_step)],
                              verb="Refuse", available=lambda row: True))
    def no_agent(job_args: dict[str, Any]) -> int:
        raise StepFailed("no agent can reach it")

    def broken_args(job_args: dict[str, Any]) -> dict[str, Any]:
        return {"widget": job_args["no such argument"]}

    for name, step in (("UnreachableJob", StepSpec("ReachStep", "reach", action="test.ok",
                                                    host=no_agent)),
                       ("BrokenJob", StepSpec("BrokenStep", "broken", action="test.ok",
                                              host=AGENT_HOST, args=broken_args))):
        registry.add_job(JobClass(name, "widget", f"{name} {{label}}",
                                  lambda a, step=step: [step], verb=name,
                                  available=lambda row: True))
    return registry


@pytest.fixture
def db(tmp_path) -> Iterator[DatabaseExecutor]:
    database = dbbase.open_database(f"sqlite:///{tmp_path}/engine.db")
    dbbase.bind(database)
    migrate(database)
    profile = ServerProfile.get(ServerProfile.name == "compute_node")
    Host.create(id=1, fqdn="agent1.example", nodename="agent1", server_profile=profile,
                state="working", roles=",compute,")
    executor = DatabaseExecutor(database, 1)
    yield executor
    executor.shutdown()


class Harness:
    def __init__(self, db: DatabaseExecutor) -> None:
        self.db = db
        self.world = World()
        self.world.supply_action = "test.ok"
        self.agents = Agents()
        self.agents.handlers["test.flaky"] = lambda args: {"flaky": "fine"}
        self.registry = make_registry(self.world)
        self.dispatcher = Dispatcher(db, self.agents)
        self.agents.dispatcher = self.dispatcher
        self.engine = self.new_engine()

    def new_engine(self) -> Engine:
        return Engine(self.db, self.dispatcher, self.registry, "test-manager",
                      poll_interval=0.05)

    async def __aenter__(self) -> Self:
        self.dispatcher.start()
        self.engine.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.stop()
        await self.dispatcher.stop()

    async def change(self, key: tuple[str, int], target: str, dry_run: bool = False) -> Any:
        result = await self.db.run(self.engine.plan_state_change, key, target, "tester", dry_run)
        self.engine.wake()
        return result

    async def run_jobs(self, jobs: list[dict[str, Any]], dry_run: bool = False) -> Any:
        result = await self.db.run(self.engine.plan_jobs, jobs, "run jobs", "tester", dry_run)
        self.engine.wake()
        return result

    async def held(self, count: int = 1) -> None:
        """Wait until ``count`` actions are held at the agents."""
        async with asyncio.timeout(5):
            while len(self.agents.held) < count:
                await asyncio.sleep(0.02)

    async def release(self) -> None:
        self.agents.hold = False
        for host_id, spec in list(self.agents.held.values()):
            await self.agents.answer(host_id, spec)
        self.agents.held.clear()

    async def finished(self, command_id: int, timeout: float = 10.0) -> Command:
        async with asyncio.timeout(timeout):
            while True:
                command = await self.db.run(Command.get_by_id, command_id)
                if command.complete:
                    return command
                await asyncio.sleep(0.02)

    def jobs(self, command_id: int) -> list[Job]:
        return self.db.call(lambda: list(
            Job.select().join(commands.CommandJob).where(commands.CommandJob.command == command_id)
            .order_by(Job.id)))


@in_loop
async def test_a_chain_runs_its_requirement_first_and_changes_states(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "off", ("supply", 1): "off"})
        command_id = await h.change(("widget", 11), "on")
        command = await h.finished(command_id)
        assert (command.errored, command.cancelled) == (False, False)
        assert command.message == "Turn on widget-11"
        assert [j.class_name for j in h.jobs(command_id)] == ["SupplyOnJob", "TurnOnJob"]
        assert h.world.states == {("widget", 11): "on", ("supply", 1): "on"}
        steps = db.call(lambda: list(Step.select().order_by(Step.id)))
        assert [(s.class_name, s.step_index, s.step_count, s.state) for s in steps] == [
            ("SwitchStep", 0, 1, "success"), ("OkStep", 0, 2, "success"),
            ("RecordStep", 1, 2, "success")]
        # the function step saw the action step's result; the console is IML's text form
        assert json.loads(steps[2].result) == {"previous": {"ok": True, "widget": 11}}
        assert steps[1].console == "widgetctl test.ok: 0\nout\n"
        assert db.call(lambda: JobLock.select().where(JobLock.released == False).count()) == 0
        alerts = db.call(lambda: [(a.alert_type, a.active) for a in Alert.select().order_by(Alert.id)])
        assert alerts == [("CommandRunningAlert", None), ("CommandSuccessfulAlert", None)]


@in_loop
async def test_already_there_is_no_command_and_unreachable_names_the_allowed(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "on", ("supply", 1): "on"})
        assert await h.change(("widget", 11), "on") is None
        with pytest.raises(InvalidTransition) as err:
            await h.change(("widget", 11), "melted")
        assert err.value.allowed == ["off"]
        with pytest.raises(commands.PlanError):
            await h.change(("widget", 99), "off")


@in_loop
async def test_a_failed_job_cancels_what_needs_it_and_others_still_run(db):
    async with Harness(db) as h:
        h.world.supply_action = "test.fail"
        h.registry = make_registry(h.world)
        h.engine.registry = h.registry
        h.world.states.update({("widget", 11): "on", ("widget", 21): "on", ("supply", 1): "off",
                               ("supply", 2): "on"})
        command_id = await h.run_jobs([{"class_name": "PolishJob", "args": {"widget_id": 11}},
                                 {"class_name": "PolishJob", "args": {"widget_id": 21}}])
        command = await h.finished(command_id)
        assert (command.errored, command.cancelled) == (True, True)
        jobs = {(j.class_name, json.loads(j.args).get("widget_id")): j for j in h.jobs(command_id)}
        supply = jobs[("SupplyOnJob", None)]
        assert (supply.errored, supply.cancelled) == (True, False)
        assert "SwitchStep failed: the widget jammed" in supply.log
        needs_it = jobs[("PolishJob", 11)]
        assert (needs_it.errored, needs_it.cancelled) == (False, True)
        assert "supply 1 is off, needs on" in needs_it.log
        other = jobs[("PolishJob", 21)]
        assert (other.errored, other.cancelled) == (False, False)
        assert h.world.states[("supply", 1)] == "off"  # a failed job changes no state
        failed = db.call(lambda: Step.get(Step.class_name == "SwitchStep"))
        assert failed.state == "failed" and "jammed" in failed.console
        alert = db.call(lambda: Alert.get(Alert.alert_type == "CommandErroredAlert"))
        assert alert.severity == "ERROR" and alert.active is True


@in_loop
async def test_a_step_is_retried_as_its_job_class_allows(db):
    async with Harness(db) as h:
        h.world.states[("widget", 11)] = "on"
        h.agents.failures_left["test.flaky"] = 1
        command_id = await h.run_jobs([{"class_name": "FlakyJob", "args": {"widget_id": 11}}])
        command = await h.finished(command_id)
        assert not command.errored
        steps = db.call(lambda: [(s.step_index, s.attempt, s.state) for s in Step.select().order_by(Step.id)])
        assert steps == [(0, 0, "failed"), (0, 1, "success")]


@in_loop
async def test_a_manager_side_step_failure_errors_the_job(db):
    async with Harness(db) as h:
        h.world.states[("widget", 11)] = "on"
        command_id = await h.run_jobs([{"class_name": "RefusedJob", "args": {"widget_id": 11, "refuse": True}}])
        command = await h.finished(command_id)
        assert command.errored
        step = db.call(lambda: Step.get())
        assert step.state == "failed" and step.log == "refused by the manager-side step"


@in_loop
async def test_an_action_step_that_cannot_be_prepared_fails_and_the_engine_goes_on(db):
    async with Harness(db) as h:
        h.world.states[("widget", 11)] = "on"
        h.world.states[("widget", 12)] = "on"
        for name, widget in (("UnreachableJob", 11), ("BrokenJob", 12)):
            command_id = await h.run_jobs([{"class_name": name, "args": {"widget_id": widget}}])
            assert (await h.finished(command_id)).errored
        logs = db.call(lambda: [s.log for s in Step.select().order_by(Step.id)])
        assert logs[0] == "no agent can reach it"
        assert logs[1].startswith("BrokenStep could not be prepared: KeyError")
        assert h.agents.executed == []
        # and the engine still runs what comes next
        h.world.states[("supply", 1)] = "on"
        command_id = await h.run_jobs([{"class_name": "PolishJob", "args": {"widget_id": 11}}])
        assert not (await h.finished(command_id)).errored


@in_loop
async def test_conflicting_commands_serialise_through_their_locks(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "on", ("supply", 1): "on"})
        h.agents.hold = True
        first = await h.change(("widget", 11), "off")
        second = await h.run_jobs([{"class_name": "FlakyJob", "args": {"widget_id": 11}}])
        first_job, = h.jobs(first)
        second_job, = h.jobs(second)
        waits = db.call(lambda: [(w.job_id, w.waits_for_id) for w in JobWait.select()])
        assert waits == [(second_job.id, first_job.id)]
        # while the first job holds its write lock, the widget offers nothing
        offered = db.call(offers.available_for, h.registry, "widget",
                          [h.registry.stateful("widget").load(11)], lambda r: r.state)
        assert offered[11]["available_transitions"] == [] and offered[11]["available_jobs"] == []
        assert offered[11]["locks"] == {"read": [], "write": [first_job.id, second_job.id]}
        await asyncio.sleep(0.3)
        assert [name for _, name in h.agents.executed] == []
        assert len(h.agents.held) == 1  # only the first job's action was sent
        h.agents.hold = False
        for host_id, spec in list(h.agents.held.values()):
            await h.agents.answer(host_id, spec)
        await h.finished(first)
        await h.finished(second)
        assert [name for _, name in h.agents.executed] == ["test.ok", "test.flaky"]


@in_loop
async def test_a_request_behind_queued_jobs_plans_from_their_end_state(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "on", ("supply", 1): "on"})
        h.agents.hold = True
        off = await h.change(("widget", 11), "off")
        on = await h.change(("widget", 11), "on")  # from "off", where the queued job leaves it
        assert [j.class_name for j in h.jobs(on)] == ["TurnOnJob"]
        joined = await h.change(("widget", 11), "on")  # already where the queued jobs go: joins them
        assert [j.id for j in h.jobs(joined)] == [j.id for j in h.jobs(on)]
        h.agents.hold = False
        for host_id, spec in list(h.agents.held.values()):
            await h.agents.answer(host_id, spec)
        for command_id in (off, on, joined):
            assert not (await h.finished(command_id)).errored
        assert h.world.states[("widget", 11)] == "on"


@in_loop
async def test_dry_run_previews_without_writing(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "off", ("supply", 1): "off"})
        preview = await h.change(("widget", 11), "on", dry_run=True)
        assert preview["dry_run"] is True and preview["message"] == "Turn on widget-11"
        assert [(j["class_name"], j["wait_for"]) for j in preview["jobs"]] == [
            ("SupplyOnJob", []), ("TurnOnJob", ["job 0"])]
        assert [s["class_name"] for s in preview["jobs"][1]["steps"]] == ["OkStep", "RecordStep"]
        assert preview["objects"] == [{"type": "supply", "id": 1, "label": "supply-1"},
                                      {"type": "widget", "id": 11, "label": "widget-11"}]
        assert preview["transition_job"]["class_name"] == "TurnOnJob"
        assert db.call(lambda: (Command.select().count(), Job.select().count())) == (0, 0)


@in_loop
async def test_cancelling_a_running_job_stops_its_action(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "on", ("supply", 1): "on"})
        h.agents.hold = True
        command_id = await h.change(("widget", 11), "off")
        job, = h.jobs(command_id)
        async with asyncio.timeout(5):
            while not h.agents.held:
                await asyncio.sleep(0.02)
        action_id = next(iter(h.agents.held))
        db.call(h.engine.cancel_job, job.id)
        command = await h.finished(command_id)
        assert command.cancelled and not command.errored
        assert h.agents.cancelled == [action_id]
        action = db.call(Action.get_by_id, action_id)
        assert action.state == "failed" and "cancelled" in action.error
        step = db.call(lambda: Step.get())
        assert step.state == "incomplete"  # IML: a cancelled step stays incomplete
        assert h.world.states[("widget", 11)] == "on"
        with pytest.raises(commands.PlanError, match="complete"):
            db.call(h.engine.cancel_job, job.id)


@in_loop
async def test_a_restarted_engine_resumes_and_runs_each_action_once(db):
    h = Harness(db)
    async with h:
        h.world.states.update({("widget", 11): "off", ("supply", 1): "on"})
        h.agents.hold = True
        command_id = await h.change(("widget", 11), "on")
        async with asyncio.timeout(5):
            while not h.agents.held:
                await asyncio.sleep(0.02)
    # the engine stopped with the job tasked and its action unanswered: a new engine under
    # the same name takes the job back at once, and the late answer completes it
    job, = h.jobs(command_id)
    assert db.call(Job.get_by_id, job.id).state == "tasked"
    h.engine = h.new_engine()
    async with h:
        h.agents.hold = False
        for host_id, spec in list(h.agents.held.values()):
            await h.agents.answer(host_id, spec)
        command = await h.finished(command_id)
        assert not command.errored
        assert [name for _, name in h.agents.executed] == ["test.ok"]
        assert db.call(lambda: Step.select().count()) == 2


@in_loop
async def test_a_job_whose_object_moved_meanwhile_is_cancelled_not_run(db):
    async with Harness(db) as h:
        h.world.states.update({("widget", 11): "on", ("supply", 1): "on"})
        h.agents.hold = True
        first = await h.change(("widget", 11), "off")
        second = await h.change(("widget", 11), "on")  # planned from "off", where first leaves it
        await h.held()
        h.agents.failures_left["test.ok"] = 1  # the first job fails: the widget stays on
        await h.release()
        assert (await h.finished(first)).errored
        second_command = await h.finished(second)
        assert second_command.cancelled
        job, = h.jobs(second)
        assert "widget 11 is on, and TurnOnJob starts from off" in job.log


def test_planning_refuses_what_is_not_offered(db):
    h = Harness(db)
    h.world.states.update({("widget", 11): "off", ("supply", 1): "on"})
    for jobs, message in (
            ([{"class_name": "NoSuchJob", "args": {}}], "unknown job class"),
            ([{"class_name": "TurnOnJob", "args": {"widget_id": 11}}], "PUT the object's state"),
            ([{"class_name": "PolishJob", "args": {"widget_id": 11}}], "not available"),
            ([{"class_name": "PolishJob", "args": {"widget_id": "11"}}], "must be a positive integer id"),
            ([{"class_name": "PolishJob", "args": {"widget_id": 12}}], "does not exist"),
            (["PolishJob"], "each job is an object")):
        with pytest.raises(commands.PlanError, match=message):
            db.call(h.engine.plan_jobs, jobs, "m", "tester")
    assert db.call(lambda: Command.select().count()) == 0


def test_a_thousand_job_command_plans_with_derived_waits(db):
    h = Harness(db)
    for n in range(1, 101):
        h.world.states[("supply", n)] = "on"
        for k in range(10):
            h.world.states[("widget", n * 10 + k)] = "on"
    jobs = [{"class_name": "PolishJob", "args": {"widget_id": w}} for w in range(10, 1010)]
    command_id = db.call(h.engine.plan_jobs, jobs, "polish everything", "tester")
    assert db.call(lambda: Job.select().count()) == 1000
    assert db.call(lambda: JobLock.select().count()) == 2000  # a write and a read each
    assert db.call(lambda: JobWait.select().count()) == 0  # readers of a supply don't conflict
    assert command_id == db.call(lambda: Command.get().id)


def test_models_and_migration_agree(db):
    """The live models and migration 0004's frozen ones describe the same columns."""
    database = db.database
    for model in (Command, Job, JobLock, JobWait, Step):
        columns = {c.name for c in database.get_columns(model._meta.table_name)}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, model
    assert isinstance(database, peewee.SqliteDatabase)


@in_loop
async def test_two_managers_on_one_database_never_run_a_job_twice(db):
    async with Harness(db) as h:
        other = Engine(db, h.dispatcher, h.registry, "other-manager", poll_interval=0.01)
        other.start()
        try:
            for n in range(40):
                h.world.states[("widget", 100 + n)] = "on"
            h.world.states.update({("supply", 10 + n): "on" for n in range(4)})
            command_id = await h.run_jobs([{"class_name": "FlakyJob",
                                            "args": {"widget_id": 100 + n}} for n in range(40)])
            other.wake()
            assert not (await h.finished(command_id)).errored
        finally:
            await other.stop()
        assert sorted(name for _, name in h.agents.executed) == ["test.flaky"] * 40
        assert db.call(lambda: Step.select().count()) == 40  # no step started twice


@pytest.mark.parametrize("page", [3, offers.SHORT_PAGE + 1])
def test_locks_of_a_page_are_only_its_objects_unreleased_locks(db, page):
    def run() -> dict:
        job = Job.create(class_name="J", description="j", args="{}", object_type="widget",
                         object_id=1)
        JobLock.insert_many([
            {"job": job.id, "object_type": "widget", "object_id": 1, "write": True},
            {"job": job.id, "object_type": "widget", "object_id": 2, "write": False},
            {"job": job.id, "object_type": "widget", "object_id": 5000, "write": True},
            {"job": job.id, "object_type": "gadget", "object_id": 1, "write": True},
            {"job": job.id, "object_type": "widget", "object_id": 3, "write": True,
             "released": True}]).execute()
        return offers.locks_of("widget", list(range(1, page + 1)))
    assert db.call(run) == {1: {"read": [], "write": [1]}, 2: {"read": [1], "write": []}}
