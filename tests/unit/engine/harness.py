"""The engine test harness: a real database and the real dispatcher and engine; the only
stand-in is the agent side of the transport, which runs each delivered action by name in
this process and hands the result to the dispatcher as the gRPC servicer would.

Two kinds of object live in memory (``World``): widgets, which need their supply on, and
supplies; ``make_registry`` gives them the job classes the tests run.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any, Self

from manager.db.engine import Command, Job
from manager.db.executor import DatabaseExecutor
from manager.engine import commands
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
from manager.engine.statemachine import StateMachine, Transition

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
