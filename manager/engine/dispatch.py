"""Dispatch: send an action to a host's agent and get its result, whatever happens between.

``submit`` writes the action row first (so a manager restart never loses it), then hands
it to the transport if the agent is connected here; otherwise it is delivered when the
agent connects (``pending_for``). Results are stored in batches by one writer task: the
first result of an action wins, later copies are acknowledged and dropped, and a result
for an action of another host is refused. An action past its deadline fails with a clear
error and is cancelled on the agent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
import uuid
from typing import Any, Protocol

from manager.db import fastsql
from manager.db.audit import AuditRecord
from manager.db.base import utcnow
from manager.db.executor import DatabaseExecutor
from manager.db.hosts import Action, Host
from manager.domain.errors import NotFound, ValidationError
from manager.ops import audit
from manager.ops.metrics import Metrics
from manager.ops.redaction import redact

log = logging.getLogger("shepherd.dispatch")
UNFINISHED = ("queued", "sent")
MAX_ARGS_BYTES = 1024 * 1024
MAX_RESULT_BYTES = 4 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What the transport sends: the agent's view of an action."""

    id: str
    name: str
    args_json: str
    deadline_ms: int


@dataclasses.dataclass(frozen=True)
class IncomingResult:
    action_id: str
    success: bool
    result_json: str
    error: str
    console: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class ActionOutcome:
    action_id: str
    state: str  # succeeded | failed
    result: Any
    error: str
    console: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"


class Transport(Protocol):
    """How the dispatcher reaches agents (the gRPC session registry in production)."""

    def is_connected(self, host_id: int) -> bool: ...

    def deliver(self, host_id: int, specs: list[ActionSpec]) -> bool: ...

    def cancel(self, host_id: int, action_id: str) -> None: ...


class Dispatcher:
    def __init__(self, db: DatabaseExecutor, transport: Transport, metrics: Metrics | None = None,
                 audit_enabled: bool = True) -> None:
        self.db = db
        self.transport = transport
        self.metrics = metrics
        self.audit_enabled = audit_enabled
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._results: asyncio.Queue[tuple[int, IncomingResult, asyncio.Future]] = asyncio.Queue()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write_results(), name="dispatch-results"),
                       asyncio.create_task(self._expire_loop(), name="dispatch-deadlines")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- sending -----------------------------------------------------------------------

    async def submit(self, host_id: int, name: str, args: dict[str, Any] | None = None,
                     timeout: float = 300.0, caused_by: str = "") -> str:
        """Queue one action; returns its id at once (``wait`` gets the outcome)."""
        return (await self.submit_many([host_id], name, args, timeout, caused_by))[0]

    async def submit_many(self, host_ids: list[int], name: str, args: dict[str, Any] | None = None,
                          timeout: float = 300.0, caused_by: str = "") -> list[str]:
        """Queue the same action for many hosts in one transaction (a fan-out)."""
        rows = self.new_rows(host_ids, name, args, timeout, caused_by)
        await self.db.run(insert_actions, rows, self.audit_enabled)
        self.inserted(rows)
        return [row["id"] for row in rows]

    def new_rows(self, host_ids: list[int], name: str, args: dict[str, Any] | None = None,
                 timeout: float = 300.0, caused_by: str = "") -> list[dict[str, Any]]:
        """Action rows to insert (with ``insert_actions``, maybe inside a caller's own
        transaction) and then hand to ``inserted``. Safe on any thread."""
        args_json = json.dumps(args or {})
        if len(args_json) > MAX_ARGS_BYTES:
            raise ValidationError({"args": f"Arguments exceed {MAX_ARGS_BYTES} bytes."})
        now = utcnow()
        deadline = now + datetime.timedelta(seconds=timeout)
        rows = []
        for h in host_ids:
            connected = self.transport.is_connected(h)
            rows.append({"id": uuid.uuid4().hex, "host": h, "name": name, "args": args_json,
                         "deadline": deadline, "caused_by": caused_by, "created_at": now,
                         "state": "sent" if connected else "queued",
                         "sent_at": now if connected else None})
        return rows

    def inserted(self, rows: list[dict[str, Any]]) -> None:
        """After the rows' transaction committed: count them and send those whose agent is
        connected (the others go when it connects)."""
        if not rows:
            return
        if self.metrics is not None:
            for row in rows:
                self.metrics.actions_dispatched.labels(self.metrics.action_label(row["name"])).inc()
            self.metrics.actions_in_flight.inc(len(rows))
        for row in rows:
            # also a "queued" row whose agent connected meanwhile: its stream's pending_for
            # may have run before these rows committed (an agent drops a second copy by id)
            if row["state"] == "sent" or self.transport.is_connected(row["host"]):
                spec = ActionSpec(row["id"], row["name"], row["args"], _epoch_ms(row["deadline"]))
                self.transport.deliver(row["host"], [spec])

    async def dispatch(self, host_id: int, name: str, args: dict[str, Any] | None = None,
                       timeout: float = 300.0, caused_by: str = "") -> ActionOutcome:
        """Submit and wait: the outcome arrives by the deadline at the latest."""
        action_id = await self.submit(host_id, name, args, timeout, caused_by)
        return await self.wait(action_id)

    async def wait(self, action_id: str, timeout: float | None = None,
                   fresh: bool = False) -> ActionOutcome:
        """The outcome of an action; polls the database as a fallback (another manager may
        hold the agent's stream). ``fresh``: the caller just submitted the action, so no
        result can be stored yet and the first read is skipped."""
        async with asyncio.timeout(timeout):
            while True:
                future = asyncio.get_running_loop().create_future()
                self._waiters.setdefault(action_id, []).append(future)
                try:
                    if not fresh:
                        outcome = await self.db.run(_outcome, action_id)
                        if outcome is not None:
                            return outcome
                    fresh = False
                    await asyncio.wait([future], timeout=2.0)
                    if future.done() and future.result() is not None:
                        return future.result()
                finally:
                    self._forget_waiter(action_id, future)

    def _forget_waiter(self, action_id: str, future: asyncio.Future) -> None:
        waiters = self._waiters.get(action_id, [])
        if future in waiters:
            waiters.remove(future)
        if not waiters:
            self._waiters.pop(action_id, None)

    # --- called by the agent server ------------------------------------------------------

    async def pending_for(self, host_id: int) -> list[ActionSpec]:
        """Every unfinished action of a host (sent again after each reconnect)."""
        return await self.db.run(_pending, host_id)

    async def store_result(self, host_id: int, result: IncomingResult) -> str:
        """Queue a result for the batched writer; returns ``stored``, ``duplicate``,
        ``unknown`` or ``foreign`` once it is committed (acknowledge all but foreign)."""
        future = asyncio.get_running_loop().create_future()
        self._results.put_nowait((host_id, result, future))
        return await future

    async def cancel(self, action_id: str, reason: str = "cancelled") -> bool:
        """Fail an unfinished action and ask its agent to stop it."""
        row = await self.db.run(fail_action, action_id, reason, self.audit_enabled)
        if row is None:
            return False
        self.cancelled([(action_id, *row)])
        return True

    def cancelled(self, rows: list[tuple[str, int, str, datetime.datetime]]) -> None:
        """After ``fail_action`` committed (id, host, name, created_at): stop the actions on
        their agents and wake their waiters."""
        self._count_finished([(name, created_at, "failed") for _, _, name, created_at in rows])
        for action_id, host_id, _, _ in rows:
            self.transport.cancel(host_id, action_id)
        self._resolve([action_id for action_id, _, _, _ in rows])

    def host_removed(self, host_id: int, action_ids: list[str]) -> None:
        self._resolve(action_ids)

    # --- background work -------------------------------------------------------------

    async def _write_results(self) -> None:
        while True:
            # No batching delay: results that arrive while a batch is being written make up
            # the next one, so batches grow exactly when the load does.
            batch = [await self._results.get()]
            while not self._results.empty() and len(batch) < 2000:
                batch.append(self._results.get_nowait())
            try:
                verdicts, finished, states = await self.db.run(
                    _store_results, [(h, r) for h, r, _ in batch], self.audit_enabled)
            except Exception as exc:  # noqa: BLE001 - every waiter must hear about it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, result, future), verdict in zip(batch, verdicts, strict=True):
                if not future.done():
                    future.set_result(verdict)
            self._count_finished(finished)
            self._resolve([r.action_id for (_, r, _), v in zip(batch, verdicts, strict=True)
                           if v == "stored"],
                          {r.action_id: _outcome_of(r, states[r.action_id])
                           for (_, r, _), v in zip(batch, verdicts, strict=True) if v == "stored"})

    async def _expire_loop(self, interval: float = 1.0) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            if self.metrics is not None:
                self.metrics.worker_ran("action_deadlines", due)
            try:
                expired = await self.db.run(_expire_overdue, self.audit_enabled)
            except Exception:  # a database outage must not end the loop
                log.warning("could not check action deadlines", exc_info=True)
                continue
            for action_id, host_id, _, _ in expired:
                log.info("action %s on host %s: deadline passed", action_id, host_id,
                         extra={"action_id": action_id, "host": host_id})
                self.transport.cancel(host_id, action_id)
            self._count_finished([(n, c, "expired") for _, _, n, c in expired])
            self._resolve([a for a, _, _, _ in expired])

    def _count_finished(self, finished: list[tuple[str, datetime.datetime, str]]) -> None:
        if self.metrics is None or not finished:
            return
        now = utcnow()
        for name, created_at, outcome in finished:
            label = self.metrics.action_label(name)
            self.metrics.actions_completed.labels(label, outcome).inc()
            self.metrics.action_duration.labels(label).observe((now - created_at).total_seconds())
        self.metrics.actions_in_flight.dec(len(finished))

    def _resolve(self, action_ids: list[str],
                 outcomes: dict[str, ActionOutcome] | None = None) -> None:
        """Wake the waiters of these actions, handing over the outcome when it is known
        (saves each waiter a read of what was just written)."""
        for action_id in action_ids:
            for future in self._waiters.get(action_id, []):
                if not future.done():
                    future.set_result((outcomes or {}).get(action_id))


# --- database work (runs on a DB thread) ---------------------------------------------------

def _epoch_ms(when: datetime.datetime) -> int:
    return int(when.replace(tzinfo=datetime.UTC).timestamp() * 1000)


def insert_actions(rows: list[dict[str, Any]], audit_enabled: bool) -> None:
    """Insert action rows (and their audit rows) in one transaction; raises NotFound for a
    removed host."""
    database = Action._meta.database
    with database.atomic():
        fastsql.execute_together(database, action_statements(rows, audit_enabled))


def action_statements(rows: list[dict[str, Any]], audit_enabled: bool,
                      known: dict[int, str] | None = None) -> list[fastsql.Statement]:
    """The INSERTs of action rows and their audit rows, for the caller to run in its own
    transaction (the engine sends them with its step's writes); raises NotFound for a
    removed host. ``known``: host states the caller read in this transaction already."""
    wanted = {r["host"] for r in rows}
    if known and wanted <= set(known):
        present = {h for h in wanted if known[h] != "removed"}
    elif len(wanted) == 1:  # one statement the database has seen before
        cursor = Host._meta.database.execute_sql(
            fastsql.sql("SELECT id FROM host WHERE id = ? AND state <> 'removed'", Host),
            (next(iter(wanted)),))
        present = {h for (h,) in cursor.fetchall()}
    else:
        present = {h for (h,) in Host.select(Host.id).where(
            Host.id.in_(wanted), Host.state != "removed").tuples()}
    missing = wanted - present
    if missing:
        raise NotFound(f"no such host: {', '.join(map(str, sorted(missing)))}")
    audit_rows = audit.action_rows(rows) if audit_enabled else []
    return [*fastsql.insert_statements(Action, rows, prepare=True),
            *fastsql.insert_statements(AuditRecord, audit_rows, prepare=True)]


def _pending(host_id: int) -> list[ActionSpec]:
    rows = list(Action.select(Action.id, Action.name, Action.args, Action.deadline)
                .where(Action.host == host_id, Action.state.in_(UNFINISHED))
                .order_by(Action.created_at).tuples())
    if rows:
        (Action.update(state="sent", sent_at=utcnow())
         .where(Action.id.in_([r[0] for r in rows]), Action.state == "queued").execute())
    return [ActionSpec(i, n, a, _epoch_ms(d)) for i, n, a, d in rows]


def _outcome(action_id: str) -> ActionOutcome | None:
    row = Action.get_or_none(Action.id == action_id)
    if row is None:
        raise NotFound(f"action {action_id} does not exist")
    if row.state in UNFINISHED:
        return None
    result = json.loads(row.result) if row.result else None
    return ActionOutcome(row.id, row.state, result, row.error, json.loads(row.console or "[]"))


def _store_results(batch: list[tuple[int, IncomingResult]], audit_enabled: bool
                   ) -> tuple[list[str], list[tuple[str, datetime.datetime, str]], dict[str, str]]:
    """Verdicts per result, (name, created_at, outcome) of the actions finished now, and
    the state each stored result gave its action."""
    ids = list({r.action_id for _, r in batch})
    finished: list[tuple[str, datetime.datetime, str]] = []
    outcomes: dict[str, list[str]] = {}
    with Action._meta.database.atomic():
        owners = {i: (h, s, n, c) for i, h, s, n, c in Action.select(
            Action.id, Action.host, Action.state, Action.name, Action.created_at)
            .where(Action.id.in_(ids)).tuples()}
        verdicts: list[str] = []
        storable: dict[int, IncomingResult] = {}  # position in batch → result to store
        for host_id, r in batch:
            owner = owners.get(r.action_id)
            if owner is None:
                verdicts.append("unknown")
            elif owner[0] != host_id:
                verdicts.append("foreign")
            elif owner[1] not in UNFINISHED:
                verdicts.append("duplicate")
            else:
                storable[len(verdicts)] = r
                owners[r.action_id] = (host_id, "done", owner[2], owner[3])
                verdicts.append("stored")
        stored = _store_batch(list(storable.values()))
        for position, r in storable.items():
            state = stored.get(r.action_id)
            if state is None:  # finished meanwhile by another manager or the deadline pass
                verdicts[position] = "duplicate"
                continue
            owner = owners[r.action_id]
            finished.append((owner[2], owner[3], state))
            outcomes.setdefault(state, []).append(r.action_id)
        if audit_enabled and outcomes:
            audit.actions_finished(outcomes)
        _forget_secrets([r.action_id for r in storable.values() if r.action_id in stored])
    return verdicts, finished, {i: state for state, ids in outcomes.items() for i in ids}


def _forget_secrets(action_ids: list[str]) -> None:
    """Mask the secrets (a BMC's password) in the arguments of finished actions: the agent
    needed them, nobody needs them stored any longer."""
    if not action_ids:
        return
    for action_id, args in (Action.select(Action.id, Action.args)
                            .where(Action.id.in_(action_ids), Action.args.contains('"password"'))
                            .tuples()):
        Action.update(args=json.dumps(redact(json.loads(args)))).where(
            Action.id == action_id).execute()


def _store_batch(results: list[IncomingResult]) -> dict[str, str]:
    """Store the first result of each action in one statement; {action_id: new state} for
    those stored (an action already finished keeps its first result)."""
    if not results:
        return {}
    now = utcnow()
    rows = [_row(r, now) for r in results]
    database = Action._meta.database
    p = database.param
    values = ", ".join([f"({p}, {p}, {p}, {p}, {p}, {p})"] * len(rows))
    sql = (f"WITH v(id, state, result, error, console, finished_at) AS (VALUES {values}) "
           "UPDATE action SET state = v.state, result = v.result, error = v.error, "
           "console = v.console, finished_at = v.finished_at FROM v "
           "WHERE action.id = v.id AND action.state IN ('queued', 'sent') RETURNING action.id")
    params = [value for row in rows for value in row]
    stored = {action_id for (action_id,) in database.execute_sql(sql, params).fetchall()}
    return {row[0]: row[1] for row in rows if row[0] in stored}


def _outcome_of(r: IncomingResult, state: str) -> ActionOutcome:
    """The outcome just stored for ``r`` (as ``_outcome`` would read it back)."""
    _, _, result, error, console, _ = _row(r, utcnow())
    return ActionOutcome(r.action_id, state, json.loads(result) if result else None, error,
                         json.loads(console))


def _row(r: IncomingResult, now: datetime.datetime) -> tuple:
    too_big = len(r.result_json) > MAX_RESULT_BYTES
    error = f"the result exceeds {MAX_RESULT_BYTES} bytes and was dropped" if too_big else r.error
    state = "succeeded" if r.success and not too_big else "failed"
    result = None if too_big or not r.result_json else r.result_json
    return (r.action_id, state, result, error[:10000], json.dumps(r.console)[:MAX_RESULT_BYTES], now)


def fail_action(action_id: str, reason: str, audit_enabled: bool
                ) -> tuple[int, str, datetime.datetime] | None:
    """Fail an unfinished action (host, name, created_at), or None if it had finished."""
    row = Action.get_or_none(Action.id == action_id)
    if row is None or row.state not in UNFINISHED:
        return None
    with Action._meta.database.atomic():
        changed = (Action.update(state="failed", error=reason, finished_at=utcnow())
                   .where(Action.id == action_id, Action.state.in_(UNFINISHED)).execute())
        if changed and audit_enabled:
            audit.actions_finished({"failed": [action_id]})
    return (row.host_id, row.name, row.created_at) if changed else None


def _expire_overdue(audit_enabled: bool) -> list[tuple[str, int, str, datetime.datetime]]:
    now = utcnow()
    overdue = list(Action.select(Action.id, Action.host, Action.name, Action.created_at).where(
        Action.state.in_(UNFINISHED), Action.deadline < now).tuples())
    expired = []
    with Action._meta.database.atomic():
        for action_id, host_id, name, created_at in overdue:
            changed = (Action.update(state="failed", finished_at=now,
                                     error="deadline passed: no result from the agent in time")
                       .where(Action.id == action_id, Action.state.in_(UNFINISHED)).execute())
            if changed:
                expired.append((action_id, host_id, name, created_at))
        if audit_enabled and expired:
            audit.actions_finished({"expired": [e[0] for e in expired]})
    return expired
