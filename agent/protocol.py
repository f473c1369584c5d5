"""Protocol facts the agent side shares: its protocol version and message envelope."""

from __future__ import annotations

from typing import Any

from protos import agent_pb2

# Bumped only when the agent starts relying on fields an older manager would not send.
PROTOCOL_VERSION = 1


def agent_message(**body: Any) -> agent_pb2.AgentMessage:
    """An AgentMessage carrying ``body`` (e.g. ``hello=…``) and the protocol version."""
    return agent_pb2.AgentMessage(protocol_version=PROTOCOL_VERSION, **body)
