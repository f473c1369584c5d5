"""Periodic background passes that keep operational data current: the registered-agents
gauge and audit-log pruning. Each reports how late it ran (``shepherd_worker_lag_seconds``)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from manager.db.executor import DatabaseExecutor
from manager.db.hosts import Host
from manager.ops import audit
from manager.ops.metrics import Metrics

log = logging.getLogger("shepherd.housekeeping")
GAUGE_INTERVAL = 30.0
PRUNE_INTERVAL = 6 * 3600.0


class Housekeeping:
    def __init__(self, db: DatabaseExecutor, metrics: Metrics | None, audit_retention_days: int | None) -> None:
        self.db = db
        self.metrics = metrics
        self.retention = audit_retention_days
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self._every(GAUGE_INTERVAL, "registered_gauge",
                                                               self._refresh_registered)))
        if self.retention:
            self._tasks.append(asyncio.create_task(self._every(PRUNE_INTERVAL, "audit_prune",
                                                               self._prune, first=60.0)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _every(self, interval: float, name: str, work, first: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + first
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            if self.metrics is not None:
                self.metrics.worker_ran(name, due)
            try:
                await work()
            except Exception:
                log.warning("%s pass failed", name, exc_info=True)
            due = loop.time() + interval

    async def _refresh_registered(self) -> None:
        counts = await self.db.run(_registered_by_role)
        for role, count in counts.items():
            self.metrics.agents_registered.labels(role).set(count)

    async def _prune(self) -> None:
        removed = await self.db.run(audit.prune, self.retention)
        if removed:
            log.info("pruned %d audit records older than %d days", removed, self.retention)


def _registered_by_role() -> dict[str, int]:
    counts: Counter[str] = Counter()
    for (roles,) in Host.select(Host.roles).where(Host.state != "removed").tuples().iterator():
        counts.update(r for r in roles.split(",") if r)
    return dict(counts)
