"""Small writes that arrive together share one transaction (one commit, one fsync).

Each call runs in its own savepoint, so one call's failure rolls back only its own writes
and reaches only its own caller. A failure of the database itself (a lost connection, a
full disk) ends the whole batch instead: every caller hears it, as ``DatabaseUnavailable``.
Batches form from what queued while the previous batch was being written: there is no
batching delay, and batches grow exactly when the load does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import peewee

from manager.db.executor import DatabaseExecutor

MAX_BATCH = 500
#: runs a batch's items in one transaction on a DB thread: an outcome (a result or the
#: exception it raised) per item, in order
Runner = Callable[[peewee.Database, list[Any]], list[Any]]
#: errors of the database, not of one call: they end the batch
DATABASE_FAILURES = (peewee.OperationalError, peewee.InterfaceError)


def run_calls(database: peewee.Database, calls: list[tuple[Callable[..., Any], tuple]]
              ) -> list[Any]:
    """The default runner: items are ``(fn, args)``."""
    outcomes: list[Any] = []
    with database.atomic():
        for fn, args in calls:
            outcomes.append(in_savepoint(database, fn, *args))
    return outcomes


def in_savepoint(database: peewee.Database, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a savepoint: its result, or the exception it raised (its writes
    undone). A failure of the database itself is raised: the batch cannot go on."""
    try:
        with database.atomic():
            return fn(*args)
    except DATABASE_FAILURES:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        return exc


class BatchedWriter:
    def __init__(self, db: DatabaseExecutor, runner: Runner = run_calls) -> None:
        self.db = db
        self.runner = runner
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a DB thread in the next batch's transaction; its result
        (with the default runner)."""
        return await self.submit((fn, args))

    async def submit(self, item: Any) -> Any:
        """Queue ``item`` for the runner's next batch; its outcome (raised if an exception)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name="batched-writer")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
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
                outcomes = await self.db.run(self.runner, self.db.database,
                                             [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the commit failed: every caller hears it
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
