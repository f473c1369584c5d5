"""Runs the manager's actions for one agent: de-duplication, concurrency, deadlines, cancel.

Delivery is at least once, so the same ActionRequest may arrive several times (after every
reconnect, for instance). The runner keys everything by action id: a running action is not
started again, and a finished one whose result is still in the outbox has that result sent
again instead of running twice. Each result is written to the outbox before it is sent and
stays there until the manager's ResultAck names it; after that it is forgotten, since the
manager acknowledges only a committed result and never delivers that action again.

The runner outlives connections: a connection ``attach``es a sender when its stream is up and
``detach``es it when the stream drops. Progress lines produced meanwhile are dropped; results
are not lost, since the outbox is re-sent after the next Welcome.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent.actions import ActionContext, Machine, Registry, failed
from agent.protocol import agent_message
from agent.state import Outbox, StateError
from protos import agent_pb2

log = logging.getLogger(__name__)

DEADLINE_PASSED = "deadline passed"
REMEMBERED_ACKS = 10_000
CANCELLED = "cancelled by the manager"

Sender = Callable[[agent_pb2.AgentMessage], None]


class ActionRunner:
    """Executes ActionRequests with at most ``max_actions`` running at once."""

    def __init__(self, registry: Registry, machine: Machine, outbox: Outbox,
                 max_actions: int, label: str = "agent") -> None:
        self._registry = registry
        self._machine = machine
        self._outbox = outbox
        self._slots = asyncio.Semaphore(max_actions)
        self._label = label
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancellable: set[str] = set()
        self._cancel_reasons: dict[str, str] = {}
        self._send: Sender | None = None
        # Acknowledged ids: an ack means the manager stored the result, so a later delivery
        # of the id is stale (it can race the ack on reconnect) and must not run again.
        self._acknowledged: collections.OrderedDict[str, None] = collections.OrderedDict()

    def attach(self, send: Sender) -> None:
        self._send = send

    def detach(self) -> None:
        self._send = None

    def running_ids(self) -> list[str]:
        return sorted(self._tasks)

    def submit(self, request: agent_pb2.ActionRequest) -> None:
        """Start ``request`` unless it is running (ignored) or finished (result re-sent)."""
        action_id = request.action_id
        if action_id in self._acknowledged:
            log.info("%s: action %s was already acknowledged; stale delivery ignored",
                     self._label, action_id)
            return
        if action_id in self._tasks:
            log.info("%s: action %s is already running; duplicate ignored", self._label, action_id)
            return
        stored = self._outbox.get(action_id)
        if stored is not None:
            log.info("%s: action %s already finished; result sent again", self._label, action_id)
            self._emit(agent_message(action_result=stored))
            return
        log.info("%s: action %s (%s) received", self._label, action_id, request.name)
        task = asyncio.create_task(self._run(request), name=f"action {action_id}")
        self._tasks[action_id] = task
        task.add_done_callback(functools.partial(self._forget, action_id))

    def cancel(self, action_id: str, reason: str = CANCELLED) -> None:
        """Stop a running action; it then reports a failed result saying ``reason``."""
        if action_id not in self._cancellable:
            log.info("%s: cancel of %s ignored: not running", self._label, action_id)
            return
        self._cancel_reasons[action_id] = reason
        self._tasks[action_id].cancel()

    async def acknowledge(self, action_ids: Iterable[str]) -> None:
        """The manager committed these results: drop them from the outbox."""
        ids = list(action_ids)
        for action_id in ids:
            self._acknowledged[action_id] = None
        while len(self._acknowledged) > REMEMBERED_ACKS:
            self._acknowledged.popitem(last=False)
        await self._outbox_io(lambda: [self._outbox.delete(i) for i in ids])

    async def unacknowledged(self) -> list[agent_pb2.ActionResult]:
        return await self._outbox_io(self._outbox.all)

    async def close(self) -> None:
        """Stop every running action without reporting (the manager will deliver it again)."""
        tasks = list(self._tasks.values())
        if tasks:
            log.info("%s: interrupting %d running action(s); the manager will deliver them "
                     "again", self._label, len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _outbox_io(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Disk outboxes block (fsync): a worker thread; in-memory ones (simulator) do not."""
        if getattr(self._outbox, "in_memory", False):
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def _forget(self, action_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(action_id) is task:
            del self._tasks[action_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: action %s runner failed: %r", self._label, action_id,
                      task.exception())

    async def _run(self, request: agent_pb2.ActionRequest) -> None:
        self._cancellable.add(request.action_id)
        try:
            result = await self._execute(request)
        except asyncio.CancelledError:
            reason = self._cancel_reasons.pop(request.action_id, None)
            if reason is None:
                raise
            result = failed(request.action_id, reason)
        finally:
            self._cancellable.discard(request.action_id)
        await self._finish(result)

    async def _execute(self, request: agent_pb2.ActionRequest) -> agent_pb2.ActionResult:
        """Run under the deadline, which also covers the wait for a free slot."""
        deadline = request.deadline_ms / 1000 if request.deadline_ms else None
        if deadline is not None and deadline <= time.time():
            return failed(request.action_id, DEADLINE_PASSED)
        ctx = ActionContext(request.action_id, deadline, self._machine,
                            functools.partial(self._progress, request.action_id))
        timeout = asyncio.timeout(None if deadline is None else deadline - time.time())
        try:
            async with timeout, self._slots:
                return await self._registry.execute(request, ctx)
        except TimeoutError:
            if timeout.expired():
                return failed(request.action_id, DEADLINE_PASSED)
            raise

    async def _finish(self, result: agent_pb2.ActionResult) -> None:
        try:
            await self._outbox_io(self._outbox.put, result)
        except StateError as exc:
            log.error("%s: result of %s held in memory only, not on disk: %s",
                      self._label, result.action_id, exc)
        outcome = "succeeded" if result.success else f"failed: {result.error}"
        log.info("%s: action %s %s", self._label, result.action_id, outcome)
        self._emit(agent_message(action_result=result))

    def _progress(self, action_id: str, line: str) -> None:
        self._emit(agent_message(action_progress=agent_pb2.ActionProgress(
            action_id=action_id, line=line)))

    def _emit(self, message: agent_pb2.AgentMessage) -> None:
        if self._send is not None:
            self._send(message)
