"""Small builders for agent tests: a machine with a fixed inventory, requests, runners."""

from __future__ import annotations

import json
import time
from typing import Any

from agent.actions import default_registry
from agent.runner import ActionRunner
from agent.state import Outbox
from protos import agent_pb2


class FakeMachine:
    """A machine whose inventory is fixed, so tests need no real /sys or netlink."""

    def __init__(self, fqdn: str = "node1.example.com") -> None:
        self.fqdn = fqdn

    def inventory(self) -> dict[str, Any]:
        return {"fqdn": self.fqdn, "nodename": self.fqdn.split(".")[0], "boot_time": 1,
                "cpu_count": 2, "memory_bytes": 1 << 30, "architecture": "x86_64",
                "kernel": "6.1.0", "block_devices": [], "interfaces": []}


def make_request(action_id: str = "a1", name: str = "agent.ping", args: Any = None,
                 deadline_in: float | None = None) -> agent_pb2.ActionRequest:
    """An ActionRequest; ``deadline_in`` seconds from now (negative = already passed)."""
    deadline_ms = 0 if deadline_in is None else int((time.time() + deadline_in) * 1000)
    return agent_pb2.ActionRequest(action_id=action_id, name=name,
                                   args_json=json.dumps(args if args is not None else {}),
                                   deadline_ms=deadline_ms)


def make_runner(tmp_path: Any, max_actions: int = 8) -> tuple[ActionRunner, list, Outbox]:
    """A runner with the real actions, a fresh outbox, and the list its messages go to."""
    outbox = Outbox(str(tmp_path / "outbox"))
    sent: list[agent_pb2.AgentMessage] = []
    runner = ActionRunner(default_registry(), FakeMachine(), outbox, max_actions)
    runner.attach(sent.append)
    return runner, sent, outbox


def results(sent: list[agent_pb2.AgentMessage]) -> list[agent_pb2.ActionResult]:
    return [m.action_result for m in sent if m.HasField("action_result")]


def progress_lines(sent: list[agent_pb2.AgentMessage]) -> list[str]:
    return [m.action_progress.line for m in sent if m.HasField("action_progress")]
