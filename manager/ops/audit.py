"""Writing the audit log (on a database thread).

A change and its audit row commit together (``run_audited``); a refused request leaves a row
of its own with the status it got. Request bodies are stored with their secrets masked.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any, NamedTuple

from manager.db.audit import AuditedTransaction, AuditRecord, insert_row
from manager.db.base import utcnow
from manager.ops.redaction import redact

MAX_SUMMARY = 8192
#: one encoder for every summary: ``json.dumps`` with options builds a new one per call
_ENCODER = json.JSONEncoder(default=str, sort_keys=True)


class Actor(NamedTuple):
    """Who made a request and from where (a tuple: made for every audited request, on the
    event loop, where a frozen dataclass took three times as long to make)."""

    username: str
    user_id: int | None
    credential: str
    address: str
    method: str
    path: str
    request_id: str


def summary(body: Any) -> str:
    """``body`` as JSON with its secrets masked, cut to ``MAX_SUMMARY`` characters."""
    text = _ENCODER.encode(redact(body))
    return text if len(text) <= MAX_SUMMARY else text[:MAX_SUMMARY - 3] + "..."


def row_values(actor: Actor, kind: str, object_type: str, object_id: Any, summary_text: str,
               status: int | None, outcome: str = "", command_id: int | None = None) -> tuple:
    """One audit row's values, in ``manager.db.audit.ROW_COLUMNS`` order (``at`` is filled
    in when it is inserted: by the database on PostgreSQL, the transaction's start)."""
    return (kind, actor.username[:150], actor.user_id, actor.credential, actor.address[:64],
            actor.method, actor.path[:512], object_type,
            "" if object_id is None else str(object_id)[:64], summary_text, status, outcome,
            command_id, actor.request_id)


def record(actor: Actor, kind: str, object_type: str, object_id: Any, body: Any,
           status: int | None, outcome: str = "", command_id: int | None = None) -> None:
    """Insert one audit row on its own (a refused request, which changed nothing)."""
    row = row_values(actor, kind, object_type, object_id, summary(body), status, outcome,
                     command_id)
    insert_row(AuditRecord._meta.database, row)


def run_audited(actor: Actor, kind: str, object_type: str, object_id: Any, body: Any,
                fn: Callable[..., Any], *args: Any) -> Any:
    """Run a write and its audit row in one transaction. ``fn`` returns ``(status, doc)``
    (resource writes) or anything else (then the status is 200, or 204 for None).

    The summary is built here, on the database thread, not on the event loop: a large body
    (an inventory of 10,000 nodes) takes a while to mask and encode, and a DB thread yields
    the interpreter lock to the loop while it does. It is built before the transaction begins
    (on SQLite the write lock is held from BEGIN); the row is sent with the COMMIT
    (``AuditedTransaction``)."""
    text = summary(body)
    database = AuditRecord._meta.database
    if database.in_transaction():  # a caller's transaction: its commit carries the row
        with database.atomic():
            result = fn(*args)
            row = outcome_row(actor, kind, object_type, object_id, text, result)
            insert_row(database, row)
        return result
    with AuditedTransaction(database) as transaction:
        result = fn(*args)
        transaction.row = outcome_row(actor, kind, object_type, object_id, text, result)
    return result


def run_unaudited(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a write as one transaction, as ``run_audited`` does but without its row: turning
    the audit log off must not change what a write does (a write that reads, then changes,
    stays atomic, and the executor may run it again after a deadlock)."""
    with AuditRecord._meta.database.atomic():
        return fn(*args)


def outcome_row(actor: Actor, kind: str, object_type: str, object_id: Any, text: str,
                 result: Any) -> tuple:
    """The row of a write that succeeded: its status, object and command from its result."""
    status, doc = result if _is_status_pair(result) else (204 if result is None else 200, None)
    if object_id is None and isinstance(doc, dict):
        object_id = doc.get("id")
    command = doc.get("command") if isinstance(doc, dict) else None
    command_id = command.get("id") if isinstance(command, dict) else None
    if object_type == "command" and status == 201:
        command_id = object_id
    return row_values(actor, kind, object_type, object_id, text, status, "ok", command_id)


def _is_status_pair(result: Any) -> bool:
    return isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int)


def action_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit rows for newly dispatched actions (inserted with them)."""
    return [{"at": row["created_at"], "kind": "action", "username": row["caused_by"][:150],
             "object_type": "host", "object_id": str(row["host"]), "action_id": row["id"],
             "summary": summary({"action": row["name"], "args": json.loads(row["args"])}),
             "outcome": "queued"} for row in rows]


def actions_finished(outcomes: dict[str, list[str]]) -> None:
    """Record how dispatched actions ended (``{"succeeded": [ids], "failed": [ids]}``)."""
    for outcome, ids in outcomes.items():
        for start in range(0, len(ids), 1000):
            (AuditRecord.update(outcome=outcome)
             .where(AuditRecord.action_id.in_(ids[start:start + 1000])).execute())


def prune(retention_days: int) -> int:
    """Delete records older than the retention period; returns how many."""
    cutoff = utcnow() - datetime.timedelta(days=retention_days)
    return AuditRecord.delete().where(AuditRecord.at < cutoff).execute()
