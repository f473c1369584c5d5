"""Host checks: does this machine have what its server profile requires?

``host.validate`` is the first step of the manager's "Set up host" job on a newly registered
machine. It looks for commands on PATH, kernel modules (loaded, or loadable) and device
nodes, and reports the agent's clock and the kernel's NTP view so that the manager can
compare the clock with its own. It changes nothing, so a redelivered request is harmless.
"""

from __future__ import annotations

from typing import Any

from agent.actions import ActionContext, ActionError, action

NAME_PATTERN = r"^[A-Za-z0-9._+-]{1,64}$"
DEVICE_PATTERN = r"^/dev/[A-Za-z0-9._/-]{1,200}$"
MODULE_TIMEOUT = 30.0   # seconds per kernel module when the action has no deadline
LABELS = {"command": "command", "kernel_module": "kernel module", "device": "device"}


def _list_of(pattern: str, refused: str) -> dict[str, Any]:
    # Python's "$" also matches before a final newline, hence the refusal of "\n".
    return {"type": "array", "maxItems": 100,
            "items": {"type": "string", "pattern": pattern, "not": {"pattern": refused}}}


VALIDATE_SCHEMA = {
    "type": "object",
    "properties": {
        "commands": _list_of(NAME_PATTERN, r"\n"),
        "kernel_modules": _list_of(NAME_PATTERN, r"\n"),
        "devices": _list_of(DEVICE_PATTERN, r"\.\.|\n"),
    },
    "additionalProperties": False,
}


@action("host.validate", schema=VALIDATE_SCHEMA)
async def validate(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Check every command, kernel module and device asked for; touch nothing.

    Succeeds with ``{"checks": [...], "time": ..., "ntp_synchronized": ...}``; fails with one
    line naming everything missing. Kernel modules that are not loaded cost a ``modinfo``
    each, bounded by the deadline; progress is reported after each kind of check.
    """
    machine = ctx.machine
    commands, modules = args.get("commands", []), args.get("kernel_modules", [])
    devices = args.get("devices", [])
    total = len(commands) + len(modules) + len(devices)
    checks = [_check("command", name, machine.has_command(name),
                     "found on PATH", "not found on PATH") for name in commands]
    _progress(ctx, checks, total, commands)
    for name in modules:
        checks.append(await _kernel_module(ctx, name))
    _progress(ctx, checks, total, modules)
    checks += [_check("device", path, machine.has_device(path), "present", "absent")
               for path in devices]
    _progress(ctx, checks, total, devices)
    failures = [f"{LABELS[c['kind']]} {c['name']}" for c in checks if not c["ok"]]
    if failures:
        raise ActionError("missing: " + ", ".join(failures))
    ntp = machine.ntp_synchronized()
    return {"checks": checks, "time": machine.now(), "ntp_synchronized": ntp}


async def _kernel_module(ctx: ActionContext, name: str) -> dict[str, Any]:
    """Loaded, or at least available; modinfo gets what is left of the deadline."""
    remaining = ctx.remaining()
    timeout = MODULE_TIMEOUT if remaining is None else max(0.0, min(remaining, MODULE_TIMEOUT))
    try:
        state = await ctx.machine.kernel_module_state(name, timeout)
    except TimeoutError:
        raise ActionError(f"timed out checking kernel module {name}") from None
    return _check("kernel_module", name, state in ("loaded", "available"),
                  "loaded" if state == "loaded" else "available, not loaded",
                  "neither loaded nor available")


def _check(kind: str, name: str, ok: bool, found: str, not_found: str) -> dict[str, Any]:
    return {"kind": kind, "name": name, "ok": ok, "detail": found if ok else not_found}


def _progress(ctx: ActionContext, checks: list[dict[str, Any]], total: int,
              group: list[str]) -> None:
    """One line per kind of check actually asked for."""
    if group:
        ctx.progress(f"checked {len(checks)} of {total}")
