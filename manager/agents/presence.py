"""Who is in contact: last-seen times kept in memory and flushed to the database in batches,
and a HostContactAlert for a host silent or disconnected longer than the contact timeout.

Heartbeats are never written one by one (at 10,000 agents that would be 1,000 writes a
second); one UPDATE per flush records every host heard from since the last one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from manager.agents.sessions import SessionRegistry
from manager.db.base import utcnow
from manager.db.executor import DatabaseExecutor
from manager.domain import hosts
from manager.ops.metrics import Metrics

log = logging.getLogger("shepherd.presence")


class Presence:
    def __init__(self, db: DatabaseExecutor, registry: SessionRegistry, contact_timeout: float,
                 flush_interval: float | None = None, metrics: Metrics | None = None) -> None:
        self.db = db
        self.metrics = metrics
        self.registry = registry
        self.contact_timeout = contact_timeout
        self.flush_interval = flush_interval or min(5.0, contact_timeout / 3)
        self._seen: set[int] = set()
        self._lost_since: dict[int, float] = {}
        self._disconnected: set[int] = set()
        self._task: asyncio.Task | None = None

    def start(self, known_host_ids: list[int]) -> None:
        """Hosts that do not reconnect within the timeout after a start get an alert."""
        now = time.monotonic()
        self._lost_since.update({h: now for h in known_host_ids})
        self._task = asyncio.create_task(self._loop(), name="presence")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    def seen(self, host_id: int) -> None:
        self._seen.add(host_id)
        session = self.registry.sessions.get(host_id)
        if session is not None:
            session.last_seen = time.monotonic()

    def connected(self, host_id: int) -> None:
        self._lost_since.pop(host_id, None)
        self._disconnected.discard(host_id)

    def disconnected(self, host_id: int) -> None:
        self._lost_since[host_id] = time.monotonic()
        self._disconnected.add(host_id)

    def forget(self, host_id: int) -> None:
        self._lost_since.pop(host_id, None)
        self._seen.discard(host_id)

    async def flush(self) -> None:
        seen, self._seen = sorted(self._seen), set()
        gone, self._disconnected = sorted(self._disconnected), set()
        if seen:
            await self.db.run(hosts.record_contact, seen, utcnow())
        if gone:
            await self.db.run(hosts.record_disconnected, gone)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.flush_interval
            await asyncio.sleep(self.flush_interval)
            if self.metrics is not None:
                self.metrics.worker_ran("presence", due)
            self._close_silent()
            try:
                await self.flush()
                await self._raise_overdue()
            except Exception:
                log.warning("presence pass failed", exc_info=True)

    def _close_silent(self) -> None:
        """End the streams of agents that stopped talking (a cut cable keeps TCP open)."""
        cutoff = time.monotonic() - self.contact_timeout
        for session in list(self.registry.sessions.values()):
            if session.last_seen < cutoff:
                log.warning("host %s silent for %.0f s: closing its stream", session.fqdn,
                            time.monotonic() - session.last_seen)
                session.close()

    async def _raise_overdue(self) -> None:
        cutoff = time.monotonic() - self.contact_timeout
        overdue = [h for h, since in self._lost_since.items() if since <= cutoff]
        if overdue:
            raised = await self.db.run(hosts.raise_contact_lost, overdue)
            for host_id in overdue:
                self._lost_since.pop(host_id, None)
            if raised:
                log.warning("lost contact with %d host(s)", raised)
