"""The outlet sweep: every ``power_poll_interval`` seconds, each BMC agent is asked for the
power state of the outlets it reaches (``power.status``, up to ``BATCH`` outlets per action,
the agents working in parallel), and what they answer is stored as the outlets' ``has_power``
with an alert per device that does not answer (``power_jobs.record_sweep``).

A sweep that runs long is not overlapped by the next one: the next starts one interval after
it ended. An agent that is not connected gets no action (its outlets keep their last state);
a missing answer leaves outlets as they were rather than marking them Unknown."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from manager.db.executor import DatabaseExecutor
from manager.domain.inventory import power_jobs
from manager.domain.inventory.power import outlet_targets
from manager.engine.dispatch import Dispatcher

log = logging.getLogger("shepherd.power")
BATCH = 1000                # outlets per power.status action (the agent's limit)
OUTLET_TIMEOUT = 10.0       # seconds per outlet


class PowerSweep:
    def __init__(self, db: DatabaseExecutor, dispatcher: Dispatcher, interval: float,
                 is_connected: Any) -> None:
        self.db, self.dispatcher, self.interval = db, dispatcher, interval
        self.is_connected = is_connected
        self._task: asyncio.Task | None = None
        self.last: dict[str, Any] = {}      # figures of the last sweep, for logs and tests

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                log.warning("power sweep failed", exc_info=True)
            await asyncio.sleep(self.interval)

    async def sweep(self) -> dict[str, Any]:
        """One pass over every outlet; returns its figures."""
        start = time.monotonic()
        plan = await self.db.run(power_jobs.sweep_plan)
        batches = [(host, outlets[i:i + BATCH]) for host, outlets in plan.items()
                   if self.is_connected(host) for i in range(0, len(outlets), BATCH)]
        counts = await asyncio.gather(*(self._batch(host, ids) for host, ids in batches))
        self.last = {"outlets": sum(len(ids) for _, ids in batches),
                     "skipped": sum(len(o) for h, o in plan.items() if not self.is_connected(h)),
                     "ok": sum(c["ok"] for c in counts),
                     "failed": sum(c["failed"] for c in counts),
                     "seconds": round(time.monotonic() - start, 3)}
        if self.last["outlets"] or self.last["skipped"]:
            log.info("power sweep: %(outlets)d outlets, %(ok)d answered, %(failed)d failed, "
                     "%(skipped)d behind disconnected agents, in %(seconds)s s", self.last)
        return self.last

    async def _batch(self, host_id: int, outlet_ids: list[int]) -> dict[str, int]:
        targets = await self.db.run(outlet_targets, outlet_ids)
        timeout = OUTLET_TIMEOUT * 3
        outcome = await self.dispatcher.dispatch(
            host_id, "power.status", {"outlets": targets, "timeout": OUTLET_TIMEOUT},
            timeout=timeout, caused_by="power sweep")
        if not outcome.ok:
            log.warning("power sweep through host %d failed: %s", host_id, outcome.error)
            return {"ok": 0, "failed": len(outlet_ids)}
        entries = (outcome.result or {}).get("outlets", [])
        return await self.db.run(power_jobs.record_sweep, entries)
