"""The engine at run time: plan requests into commands, claim runnable jobs, run their steps.

One task per running job walks its steps: ``advance`` (on a database thread, batched with
other jobs' advances into one transaction) records the last outcome and starts the next
step; the task then waits for that step's action through dispatch. Nothing lives only in
memory: a manager that restarts (or another manager, once this one's lease on a job runs
out) resumes every job from its rows.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from manager.db.batching import BatchedWriter
from manager.db.executor import DatabaseExecutor, DatabaseUnavailable
from manager.domain.errors import NotFound
from manager.engine import commands, progress
from manager.engine.dispatch import Dispatcher, fail_action
from manager.engine.planning import ObjectKey
from manager.engine.registry import Registry
from manager.ops.metrics import Metrics

log = logging.getLogger("shepherd.engine")
LEASE = datetime.timedelta(seconds=60)
CLAIM_BATCH = 1000

StateListener = Callable[[str, int, str], None]


class Engine:
    def __init__(self, db: DatabaseExecutor, dispatcher: Dispatcher, registry: Registry,
                 instance: str, audit_enabled: bool = True, poll_interval: float = 1.0,
                 metrics: Metrics | None = None) -> None:
        self.db = db
        self.dispatcher = dispatcher
        self.registry = registry
        self.instance = instance
        self.audit_enabled = audit_enabled
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.writer = BatchedWriter(db)
        self.listeners: list[StateListener] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # set by start()
        self._wake = asyncio.Event()
        self._running: dict[int, asyncio.Task] = {}
        self._tasks: list[asyncio.Task] = []
        # database time of each advance (record a step's outcome, start the next), for
        # benchmarks and ``/metrics``; bounded so a long-lived manager does not grow
        self.step_times: collections.deque[float] = collections.deque(maxlen=100_000)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._claim_loop(), name="engine-claims"),
                       asyncio.create_task(self._lease_loop(), name="engine-leases")]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop running jobs here without failing them: they resume at the next start."""
        tasks = [*self._tasks, *self._running.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=grace)
            if stuck:  # never wait for ever: their jobs' leases run out and they resume
                log.warning("%d engine tasks did not stop within %.0f s", len(stuck), grace)
        self._tasks = []
        # forget them all: a job claimed after the next start must never be taken for one
        # still running here (ids are reused once rows are deleted, as tests do)
        self._running.clear()
        await self.writer.stop()

    def wake(self) -> None:
        """Look for runnable jobs now (after a command was stored or a job completed)."""
        self._wake.set()

    # --- requests ------------------------------------------------------------------------

    def plan_state_change(self, key: ObjectKey, target: str, created_by: str,
                          dry_run: bool = False) -> dict[str, Any] | int | None:
        """On a database thread: a command taking ``key`` to ``target`` (its id), its
        preview (``dry_run``), or None when there is nothing to do. Raises
        InvalidTransition or PlanError."""
        database = self.db.database
        with database.atomic() as txn:
            commands.serialize_planning(database)
            planned = commands.plan_state_change(self.registry, key, target)
            if planned is None:
                return None
            if dry_run:
                doc = commands.preview(self.registry, planned)
                txn.rollback()
                return doc
            return commands.store(self.registry, planned, created_by)

    def plan_jobs(self, requests: list[dict[str, Any]], message: str, created_by: str,
                  dry_run: bool = False) -> dict[str, Any] | int:
        """On a database thread: a command running explicitly requested jobs."""
        database = self.db.database
        with database.atomic() as txn:
            commands.serialize_planning(database)
            checked = commands.check_requests(self.registry, requests)
            stop = commands.preempt(self.registry, checked)
            planned = commands.plan_jobs(self.registry, checked, message)
            if dry_run:
                doc = commands.preview(self.registry, planned)
                txn.rollback()
                return doc
            command_id = commands.store(self.registry, planned, created_by)
            self._stop_actions(stop)
            return command_id

    def cancel_job(self, job_id: int) -> None:
        """On a database thread: cancel a job; its running action stops on its agent."""
        self._stop_actions(commands.cancel_job(self.registry, job_id))

    def cancel_command(self, command_id: int) -> None:
        """On a database thread: cancel every cancellable unfinished job of a command."""
        self._stop_actions(commands.cancel_command(self.registry, command_id))

    def _stop_actions(self, action_ids: list[str]) -> None:
        """On a database thread: fail the actions, then (on the loop) stop them on their
        agents and look for jobs that may run now."""
        reason = "cancelled: its job was cancelled"
        failed = [(a, *row) for a in action_ids
                  if (row := fail_action(a, reason, self.audit_enabled)) is not None]
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.dispatcher.cancelled, failed)
            self.loop.call_soon_threadsafe(self.wake)

    # --- running ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        reclaim_own = True  # after a restart, this manager's own tasked jobs first
        while True:
            try:
                claimed = await self.db.run(progress.claim, self.registry, self.instance,
                                               CLAIM_BATCH, LEASE, reclaim_own)
                reclaim_own = False
            except Exception:  # a database outage must not end the loop
                log.warning("could not claim jobs", exc_info=True)
                claimed = []
            for job_id in claimed:
                running = self._running.get(job_id)
                if running is None or running.done():
                    self._running[job_id] = asyncio.create_task(self._run(job_id),
                                                                name=f"job-{job_id}")
            if self.metrics is not None:
                self.metrics.jobs_running.set(len(self._running))
            if len(claimed) >= CLAIM_BATCH:
                continue
            self._wake.clear()
            try:  # (not wait_for: on Python 3.11 it can swallow a cancellation, hanging stop())
                async with asyncio.timeout(self.poll_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(LEASE.total_seconds() / 3)
            try:
                await self.db.run(progress.renew, self.instance, list(self._running), LEASE)
            except Exception:
                log.warning("could not renew job leases", exc_info=True)

    async def _run(self, job_id: int) -> None:
        try:
            outcome = None
            while True:
                nxt = await self._advance(job_id, outcome)
                self.dispatcher.inserted(nxt.new_rows)
                for change in nxt.changes:
                    self._state_changed(*change)
                if nxt.done:
                    self.wake()  # jobs waiting for this one may run now
                    return
                try:
                    outcome = await self.dispatcher.wait(nxt.action_id, fresh=bool(nxt.new_rows))
                except NotFound:
                    outcome = None  # the action row is gone: advance records the step failed
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: the engine failed to advance it; retrying on the next claim",
                          job_id, extra={"job_id": job_id})
        finally:
            if self._running.get(job_id) is asyncio.current_task():
                del self._running[job_id]
            if self.metrics is not None:
                self.metrics.jobs_running.set(len(self._running))

    async def _advance(self, job_id: int, outcome: Any) -> progress.Next:
        delay = 0.5
        while True:
            try:
                nxt, seconds = await self.writer.run(_timed, progress.advance, self.registry,
                                                     self.dispatcher.new_rows, job_id, outcome,
                                                     self.audit_enabled)
                self.step_times.append(seconds)
                if self.metrics is not None:
                    self.metrics.engine_step.observe(seconds)
                return nxt
            except DatabaseUnavailable:
                log.warning("job %s: database unavailable; retrying in %.1f s", job_id, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _state_changed(self, object_type: str, object_id: int, state: str) -> None:
        for listener in self.listeners:
            try:
                listener(object_type, object_id, state)
            except Exception:
                log.exception("state listener failed for %s %s", object_type, object_id)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(*args), time.perf_counter() - start
