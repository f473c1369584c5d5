"""Power control for the BMC role: ``power.status``, ``power.on``, ``power.off``,
``power.cycle`` and ``power.reset`` on up to 1,000 outlets per request.

Outlets are handled concurrently, at most ``MAX_CONCURRENT`` at a time, each within its own
time (``timeout`` seconds, plus ``graceful_timeout`` for ``power.off``) and all before the
action's deadline, with a margin so that the result always gets out. The action succeeds
with one entry per outlet, in the order asked, whatever became of each outlet; only a
malformed request fails it. What each operation does to an outlet (read first, switch, read
back, graceful then forced off) is ``agent.power.control``'s business, the same for every
driver.

Drivers are the machine's own when it has some (``machine.power_drivers``: the simulator's
simulated BMCs), else the real ones (IPMI, Redfish, fence agents), imported on first use so
that agents without the BMC role never load pyghmi or sushy.

Passwords arrive in the arguments and go only to the BMC: results, errors, console lines and
logs never carry them, and fence agents read them on stdin, never from their command line.
That is also why the arguments are checked here rather than by the registry: jsonschema's
messages quote the offending value (a password with a line break, or the whole outlet list
when it is too long), so refusals here name the field and the rule, never the value.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import jsonschema

from agent.actions import ActionContext, ActionError, action
from agent.power import Limits, Outlet, PowerDriver
from agent.power.control import perform

MAX_CONCURRENT = 64         # outlets in progress at once, per action
DEFAULT_TIMEOUT = 30.0
DEFAULT_GRACEFUL_TIMEOUT = 60.0
PROGRESS_EVERY = 1.0        # seconds between progress lines
NO_LINE_BREAK = {"pattern": "[\n\r\x00]"}


def _text(max_length: int, pattern: str | None = None, min_length: int = 0) -> dict[str, Any]:
    # Python's "$" also matches before a final newline, hence the separate refusal.
    schema: dict[str, Any] = {"type": "string", "minLength": min_length,
                              "maxLength": max_length, "not": NO_LINE_BREAK}
    if pattern:
        schema["pattern"] = pattern
    return schema


OUTLET_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "driver": {"enum": ["ipmi", "redfish", "fence"]},
        "address": _text(255, r"^[A-Za-z0-9._:/\[\]-]+$", min_length=1),
        "port": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
        "username": _text(64),
        "password": _text(256),
        "identifier": _text(255, r"^[A-Za-z0-9._:/@-]*$"),
        "options": _text(1024, r"^[A-Za-z0-9_=.,:/@+% -]*$"),
        "fence_agent": _text(64, r"^(fence_[a-z0-9_]+)?$"),
    },
    "required": ["id", "driver", "address"],
    "additionalProperties": False,
    "if": {"properties": {"driver": {"const": "fence"}}},
    "then": {"required": ["fence_agent"], "properties": {"fence_agent": {"minLength": 1}}},
}

CHECKED_HERE: dict[str, Any] = {}     # the registry accepts anything; ``check`` refuses

POWER_SCHEMA = {
    "type": "object",
    "properties": {
        "outlets": {"type": "array", "maxItems": 1000, "items": OUTLET_SCHEMA},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "graceful_timeout": {"type": "number", "minimum": 0, "maximum": 3600},
    },
    "required": ["outlets"],
    "additionalProperties": False,
}
VALIDATOR = jsonschema.Draft202012Validator(POWER_SCHEMA)


@action("power.status", schema=CHECKED_HERE)
async def status(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Read each outlet's power state; changes nothing."""
    return await run("power.status", args, ctx)


@action("power.on", schema=CHECKED_HERE)
async def power_on(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Power each outlet on (left alone if on), then read it back."""
    return await run("power.on", args, ctx)


@action("power.off", schema=CHECKED_HERE)
async def power_off(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Graceful shutdown, up to ``graceful_timeout`` seconds, then forced off."""
    return await run("power.off", args, ctx)


@action("power.cycle", schema=CHECKED_HERE)
async def power_cycle(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Forced off (if on), then on."""
    return await run("power.cycle", args, ctx)


@action("power.reset", schema=CHECKED_HERE)
async def power_reset(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Hard reset of running outlets; outlets that are off are powered on."""
    return await run("power.reset", args, ctx)


async def run(operation: str, args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """``operation`` on every outlet of ``args``: ``{"outlets": [result, ...]}`` in order."""
    check(operation, args)
    drivers = drivers_for(ctx.machine)
    outlets = [Outlet.from_args(item) for item in args["outlets"]]
    timeout = float(args.get("timeout", DEFAULT_TIMEOUT))
    graceful = float(args.get("graceful_timeout", DEFAULT_GRACEFUL_TIMEOUT)) \
        if operation == "power.off" else 0.0
    end = _action_end(ctx)
    progress = _Progress(ctx, operation, len(outlets))
    slots = asyncio.Semaphore(MAX_CONCURRENT)

    async def one(outlet: Outlet) -> dict[str, Any]:
        async with slots:
            result = await _outlet(operation, drivers[outlet.driver], outlet, timeout,
                                   graceful, end, ctx)
        progress.count(result)
        return result

    results = await asyncio.gather(*(one(outlet) for outlet in outlets))
    progress.finish()
    return {"outlets": list(results)}


def check(operation: str, args: Any) -> None:
    """Refuse arguments that do not match ``POWER_SCHEMA``, without quoting any value."""
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(args))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "arguments"
        raise ActionError(f"invalid arguments for {operation}: {where}: {_rule(error)}")


def _rule(error: jsonschema.exceptions.ValidationError) -> str:
    """What the value should have been; never the value itself."""
    rule, value = error.validator, error.validator_value
    if rule in ("required", "additionalProperties"):
        return error.message            # names of properties only
    if rule == "not":
        return "must not contain a line break"
    texts = {"type": "must be of type {}", "maxLength": "must be at most {} characters",
             "minLength": "must be at least {} characters", "pattern": "must match {}",
             "maxItems": "must have at most {} items", "enum": "must be one of {}",
             "minimum": "must be at least {}", "maximum": "must be at most {}",
             "exclusiveMinimum": "must be more than {}"}
    return texts.get(rule, "must satisfy " + rule + " {}").format(json.dumps(value))


def drivers_for(machine: Any) -> Mapping[str, PowerDriver]:
    """The machine's own drivers (simulated BMCs), else the real ones."""
    own = getattr(machine, "power_drivers", None)
    if own is not None:
        return own
    from agent.power.registry import DRIVERS
    return DRIVERS


async def _outlet(operation: str, driver: PowerDriver, outlet: Outlet, timeout: float,
                  graceful: float, end: float | None, ctx: ActionContext) -> dict[str, Any]:
    now = time.monotonic()
    own = now + timeout + graceful
    deadline = own if end is None else min(own, end)
    if deadline <= now:
        return {"id": outlet.id, "ok": False, "power": "unknown", "elapsed_ms": 0,
                "error": f"{driver.device(outlet)} at {driver.where(outlet)}: not attempted: "
                         "the action's deadline passed"}
    limits = Limits(deadline, timeout + graceful, action_bound=deadline < own,
                    console=lambda line: ctx.progress(f"outlet {outlet.id}: {line}"))
    return await perform(operation, driver, outlet, limits, graceful)


def _action_end(ctx: ActionContext) -> float | None:
    """When outlets must be done (monotonic), leaving a moment to send the result."""
    remaining = ctx.remaining()
    if remaining is None:
        return None
    return time.monotonic() + remaining - min(1.0, max(0.0, remaining) * 0.05)


class _Progress:
    """A progress line at most every ``PROGRESS_EVERY`` seconds, and one at the end."""

    def __init__(self, ctx: ActionContext, operation: str, total: int) -> None:
        self.ctx, self.operation, self.total = ctx, operation, total
        self.done = self.failed = 0
        self.last = time.monotonic()

    def count(self, result: dict[str, Any]) -> None:
        self.done += 1
        self.failed += not result["ok"]
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self._line()

    def finish(self) -> None:
        self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        self.ctx.progress(f"{self.operation}: {self.done} of {self.total} outlets done, "
                          f"{self.failed} failed")
