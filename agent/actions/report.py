"""State reports the manager asks for on demand: ``report.inventory`` for now."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.actions import ActionContext, action


@action("report.inventory", schema={"type": "object", "additionalProperties": False})
async def inventory(args: dict[str, Any], ctx: ActionContext) -> dict[str, Any]:
    """The machine's current inventory, shaped like the proto ``Inventory`` message."""
    return await asyncio.to_thread(ctx.machine.inventory)
