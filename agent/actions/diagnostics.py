"""Diagnostics: actions that touch nothing, to check the path manager → agent → manager.

``agent.ping`` proves an agent answers; ``agent.sleep`` takes a known time and reports
progress each second, which is what deadline, cancel and concurrency tests need.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agent.actions import ActionContext, action

PING_SCHEMA = {
    "type": "object",
    "properties": {"echo": {"type": "string", "maxLength": 4096}},
    "additionalProperties": False,
}

SLEEP_SCHEMA = {
    "type": "object",
    "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
    "required": ["seconds"],
    "additionalProperties": False,
}


@action("agent.ping", schema=PING_SCHEMA)
async def ping(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Answer at once with the echo and this machine's fqdn."""
    return {"pong": True, "echo": args.get("echo"), "fqdn": ctx.machine.fqdn}


@action("agent.sleep", schema=SLEEP_SCHEMA)
async def sleep(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """Sleep ``seconds`` (cancellable at any point), with a progress line each second."""
    seconds = args["seconds"]
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        await asyncio.sleep(min(1.0, left))
        ctx.progress(f"slept {seconds - max(0.0, end - loop.time()):.0f}/{seconds:g} s")
    return {"slept": seconds}
