"""Small writes that arrive together share one transaction (one commit, one fsync).

Each call runs in its own savepoint, so one call's failure rolls back only its own writes
and reaches only its own caller. Batches form from what queued while the previous batch was
being written: there is no batching delay, and batches grow exactly when the load does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from manager.db.executor import DatabaseExecutor

MAX_BATCH = 500


class BatchedWriter:
    def __init__(self, db: DatabaseExecutor) -> None:
        self.db = db
        self._queue: asyncio.Queue[tuple[Callable[..., Any], tuple, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a DB thread in the next batch's transaction; its result."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name="batched-writer")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((fn, args, future))
        return await future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self.db.run(_run_batch, self.db.database, [(f, a) for f, a, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the commit failed: every caller hears it
                outcomes = [exc] * len(batch)
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def _run_batch(database: Any, calls: list[tuple[Callable[..., Any], tuple]]) -> list[Any]:
    outcomes: list[Any] = []
    with database.atomic():
        for fn, args in calls:
            try:
                with database.atomic():  # a savepoint: a failure undoes this call only
                    outcomes.append(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                outcomes.append(exc)
    return outcomes
