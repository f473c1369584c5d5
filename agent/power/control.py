"""The power operations, the same for every driver: act, wait, read back, compare.

``perform(operation, driver, outlet, limits)`` runs one operation on one outlet and returns
its result entry (``id, ok, power, error, elapsed_ms``); it never raises for a device's
failure, and never runs past ``limits.deadline``.

- Every operation reads the state first; an outlet already in the target state is left alone
  (a redelivered action is harmless).
- After a switch the state is polled until it reads as wanted; a device that keeps reporting
  the old state until the deadline is reported as such ("BMC at … reports power on after
  power.off"), since a BMC that acknowledges a command and does nothing is a real failure.
- ``power.off`` asks for a graceful shutdown first (if the driver has one), waits up to
  ``graceful_timeout``, then forces. ``power.cycle`` is a forced off then on. ``power.reset``
  is a hard reset of a running node; a node that is off is powered on instead (what a reset
  is for: a freshly started node), as Ironic's reboot does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent.power import (
    Connection,
    Limits,
    NoAnswer,
    Outlet,
    PowerDriver,
    PowerError,
    Unsupported,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_POLL = 0.1        # seconds between read-backs, doubling up to LAST_POLL
LAST_POLL = 1.0
RETRY_PAUSE = 0.5       # seconds before the one retry of a transient failure


class Mismatch(PowerError):
    """The device acknowledged a switch and kept reporting the old state."""

    def __init__(self, state: str, verb: str) -> None:
        super().__init__(f"reports power {state} after {verb}")
        self.state, self.verb = state, verb


async def bounded(awaitable: Awaitable[T], until: float) -> T:
    """``awaitable``, cancelled at ``until`` (monotonic); running out of time is ``NoAnswer``."""
    try:
        async with asyncio.timeout_at(until):
            return await awaitable
    except TimeoutError:
        raise NoAnswer() from None


class Job:
    """One operation on one outlet: the open connection, the limits, the last state read."""

    def __init__(self, connection: Connection, limits: Limits) -> None:
        self.conn = connection
        self.limits = limits
        self.power = "unknown"
        self.read_back = False                      # a read-back succeeded since the switch
        self.read_error: PowerError | None = None   # the last read-back that failed

    async def bounded(self, awaitable: Awaitable[T], until: float | None = None) -> T:
        """``awaitable``, cancelled at ``until`` (at the latest the outlet's deadline)."""
        until = self.limits.deadline if until is None else min(until, self.limits.deadline)
        return await bounded(awaitable, until)

    async def retried(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call``, once more after a pause if it fails in a way that may clear up and
        time is left (MAAS's transient errors). Only for idempotent calls."""
        try:
            return await self.bounded(call())
        except PowerError as exc:
            if exc.fatal or self.limits.left() < 2 * RETRY_PAUSE:
                raise
            log.debug("power: retrying after: %s", exc.cause)
        await asyncio.sleep(RETRY_PAUSE)
        return await self.bounded(call())

    async def query(self) -> str:
        self.power = await self.retried(self.conn.query)
        return self.power

    async def switch(self, command: Callable[[], Awaitable[None]], want: str,
                     verb: str) -> None:
        """Send ``command`` (on or off: idempotent, so retried), then wait for ``want``; a
        stubborn device is a ``Mismatch``."""
        await self.retried(command)
        if not await self.settle(want):
            self.fail_settle(verb)

    async def settle(self, want: str, until: float | None = None) -> bool:
        """Poll the state until it reads ``want`` (True) or ``until`` passes (False). Failed
        reads in between are tolerated: a BMC busy switching may miss one."""
        until = self.limits.deadline if until is None else min(until, self.limits.deadline)
        self.read_back, self.read_error = False, None
        delay = FIRST_POLL
        while time.monotonic() < until:
            try:
                self.power = await self.bounded(self.conn.query(), until)
                self.read_back = True
                if self.power == want:
                    return True
            except PowerError as exc:
                if exc.fatal:
                    raise
                self.read_error = exc
            await asyncio.sleep(max(0.0, min(delay, until - time.monotonic())))
            delay = min(delay * 2, LAST_POLL)
        return False

    def fail_settle(self, verb: str) -> None:
        if self.read_back:
            raise Mismatch(self.power, verb)
        raise self.read_error or NoAnswer()


async def status(job: Job, graceful_timeout: float) -> None:
    await job.query()


async def power_on(job: Job, graceful_timeout: float) -> None:
    if await job.query() != "on":
        await job.switch(job.conn.on, "on", "power.on")


async def power_off(job: Job, graceful_timeout: float) -> None:
    if await job.query() == "off":
        return
    try:
        await job.bounded(job.conn.soft_off())
    except Unsupported:
        pass
    else:
        if await job.settle("off", time.monotonic() + graceful_timeout):
            return
    await job.switch(job.conn.off, "off", "power.off")


async def power_cycle(job: Job, graceful_timeout: float) -> None:
    if await job.query() == "on":
        await job.switch(job.conn.off, "off", "the off step of power.cycle")
    await job.switch(job.conn.on, "on", "power.cycle")


async def power_reset(job: Job, graceful_timeout: float) -> None:
    if await job.query() == "off":
        await job.switch(job.conn.on, "on", "power.reset")
        return
    await job.bounded(job.conn.reset())
    if not await job.settle("on"):
        job.fail_settle("power.reset")


OPERATIONS: dict[str, Callable[[Job, float], Awaitable[None]]] = {
    "power.status": status, "power.on": power_on, "power.off": power_off,
    "power.cycle": power_cycle, "power.reset": power_reset,
}


async def perform(operation: str, driver: PowerDriver, outlet: Outlet, limits: Limits,
                  graceful_timeout: float = 0.0) -> dict[str, Any]:
    """Run ``operation`` on ``outlet``; the result entry, successful or not."""
    start = time.monotonic()
    job: Job | None = None
    error = None
    try:
        conn = await bounded(driver.connect(outlet, limits), limits.deadline)
        job = Job(conn, limits)
        try:
            await OPERATIONS[operation](job, graceful_timeout)
        finally:
            await _close(conn)
    except PowerError as exc:
        error = describe(exc, driver, outlet, limits)
    except Exception as exc:  # a driver bug: one outlet fails, the others go on
        log.exception("power: %s on outlet %s crashed", operation, outlet.id)
        error = f"{driver.device(outlet)} at {driver.where(outlet)}: internal error: " \
                f"{type(exc).__name__}"
    if error is not None:
        log.info("power: %s on outlet %s failed: %s", operation, outlet.id, error)
    return {"id": outlet.id, "ok": error is None,
            "power": job.power if job is not None else "unknown", "error": error,
            "elapsed_ms": int((time.monotonic() - start) * 1000)}


def describe(exc: PowerError, driver: PowerDriver, outlet: Outlet, limits: Limits) -> str:
    """One line naming the device, its address and the cause."""
    device, where = driver.device(outlet), driver.where(outlet)
    text = exc.describe(outlet.password)
    if isinstance(exc, NoAnswer):
        within = "before the action's deadline" if limits.action_bound \
            else f"within {limits.timeout:g}s"
        return f"no answer from {device} at {where} {within}" + (f" ({text})" if text else "")
    if isinstance(exc, Mismatch):
        return f"{device} at {where} {text}"
    return f"{device} at {where}: {text}"


async def _close(conn: Connection) -> None:
    """Closing is a courtesy: bounded, and its failure changes no result."""
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except Exception:
        log.debug("power: closing a connection failed", exc_info=True)

