"""Housekeeping updates that never wait for the engine's row locks.

The engine writes many rows in one transaction (a batch of steps), in no particular order.
A periodic pass that updated the same rows in its own order (last contact of hosts, job
leases) deadlocked with it on PostgreSQL, and PostgreSQL then cancelled one of the two,
sometimes the engine. Such a pass loses nothing by skipping a row another transaction holds:
the next pass, seconds later, writes it. So on PostgreSQL the rows are locked first with
``SKIP LOCKED``, only those are updated, and any wait still left is cut short by a lock
timeout. SQLite has one writer at a time and needs none of this.
"""

from __future__ import annotations

import logging
from typing import Any

import peewee

from manager.db.base import is_postgres

log = logging.getLogger("shepherd.db")
LOCK_TIMEOUT = "200ms"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout
CHUNK = 1000


def update_unlocked(model: type[peewee.Model], ids: list[int], changes: dict[Any, Any],
                    *where: Any) -> int:
    """``UPDATE model SET changes WHERE id IN ids AND where…``, skipping rows another
    transaction holds; returns how many rows were updated."""
    database = model._meta.database
    key = model._meta.primary_key
    updated = 0
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        if not is_postgres(database):
            updated += model.update(changes).where(key.in_(chunk), *where).execute()
            continue
        try:
            with database.atomic():
                database.execute_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                free = [i for (i,) in model.select(key).where(key.in_(chunk), *where)
                        .order_by(key).for_update("FOR UPDATE SKIP LOCKED").tuples()]
                if free:
                    updated += model.update(changes).where(key.in_(free)).execute()
        except peewee.OperationalError as exc:
            if getattr(exc.__cause__, "pgcode", None) != LOCK_NOT_AVAILABLE:
                raise
            log.debug("%d %s rows left for the next pass: %s", len(chunk),
                      model._meta.table_name, exc)
    return updated
