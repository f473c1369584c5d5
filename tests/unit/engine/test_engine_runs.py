"""The engine with its rows: commands planned, run, failed, retried, cancelled and resumed.

The harness (``harness.py``) runs the real engine and dispatcher on a real database; only
the agents are stand-ins.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from manager.db.engine import Command, Job, JobLock, JobWait, Step
from manager.db.hosts import Action, Alert
from manager.engine import commands, offers
from manager.engine.runner import Engine
from manager.engine.statemachine import InvalidTransition
from tests.unit.engine.harness import Harness, in_loop, make_registry


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
