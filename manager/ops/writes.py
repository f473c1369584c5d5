"""How a REST write reaches the database: with its audit row, in one transaction.

On PostgreSQL each write is its own transaction, on one of the executor's threads. Its audit
row travels with the COMMIT (``audit.run_audited``), and the server maintains the log's
indexes in its own process, so the row costs the manager almost nothing. Sharing one
transaction among unrelated requests there would hold each one's row locks until the slowest
finished, and a deadlock retry would run all of them again.

On SQLite the one database thread is the manager's bottleneck, and a commit costs it far more
than the statements before it: every page a transaction changed is written to the WAL again,
then synced. An audit row changes four pages (the table and three indexes), more than most
writes do themselves: alone in its write's transaction it added 60 to 140 µs to the 1 to 2 ms
a write takes on that thread, most of it in the commit. So writes that queue while the thread
is busy are committed together (``BatchedWriter``): each in its own
savepoint, so a refused write undoes only itself, and the audit rows of the writes that
succeeded go in one INSERT before the COMMIT. A write still commits with its row or not at
all, and its caller hears of it only once both are on disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import peewee

from manager.db.audit import insert_many
from manager.db.base import is_postgres
from manager.db.batching import BatchedWriter, in_savepoint
from manager.db.executor import DatabaseExecutor
from manager.ops import audit


@dataclasses.dataclass(frozen=True)
class Write:
    """``fn(*args)`` and what its audit row says (no row when ``actor`` is None). ``fn``
    returns ``(status, doc)`` or anything else, as ``audit.run_audited`` describes."""

    fn: Callable[..., Any]
    args: tuple
    actor: audit.Actor | None = None
    kind: str = "request"
    object_type: str = ""
    object_id: Any = None
    body: Any = None

    def run(self) -> Any:
        """On a DB thread: this write alone, as one transaction."""
        if self.actor is None:
            return audit.run_unaudited(self.fn, *self.args)
        return audit.run_audited(self.actor, self.kind, self.object_type, self.object_id,
                                 self.body, self.fn, *self.args)


def run_batch(database: peewee.Database, writes: list[Write]) -> list[Any]:
    """On a DB thread: ``writes`` in one transaction, each in a savepoint; an outcome (a
    result, or the exception that undid the write) for each. The summaries are made before
    the transaction begins (a large body takes a while to mask, and SQLite's write lock is
    held from the first write), and the rows after the last write, in one pass: built one
    by one between the writes, a row took three times as long (10 against 3 µs of the
    database thread under the write benchmark; likely the processor's caches, full of the
    writes' code each time)."""
    texts = [audit.summary(w.body) if w.actor is not None else "" for w in writes]
    with database.atomic():
        outcomes = [in_savepoint(database, w.fn, *w.args) for w in writes]
        insert_many(database, [
            audit.outcome_row(w.actor, w.kind, w.object_type, w.object_id, text, outcome)
            for w, text, outcome in zip(writes, texts, outcomes, strict=True)
            if w.actor is not None and not isinstance(outcome, Exception)])
    return outcomes


class RestWrites:
    """Runs REST writes: one transaction each on PostgreSQL, group-committed on SQLite."""

    def __init__(self, db: DatabaseExecutor) -> None:
        self.db = db
        self._batches = None if is_postgres(db.database) else BatchedWriter(db, run_batch)

    async def run(self, write: Write) -> Any:
        """``write``'s result once it and its audit row are committed; raises what it raised."""
        if self._batches is None:
            return await self.db.run(write.run)
        return await self._batches.submit(write)

    async def stop(self) -> None:
        if self._batches is not None:
            await self._batches.stop()
