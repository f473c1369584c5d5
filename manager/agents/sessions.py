"""Connected agents: one session per host with its outbound queue (the dispatcher's Transport).

A host has at most one live session: a new connection from the same host replaces the old
one, which is told to close. Everything here runs on the event loop and never blocks.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time

from manager.engine.dispatch import ActionSpec
from protos import agent_pb2

_CLOSE = None

#: action ids a session remembers having sent: enough to cover the moments around a
#: connect, when an action can be both in the stream's pending read and sent as new
RECENT_IDS = 4096


@dataclasses.dataclass(eq=False)
class AgentSession:
    host_id: int
    fqdn: str
    roles: tuple[str, ...]
    queue: asyncio.Queue = dataclasses.field(default_factory=asyncio.Queue)
    connected_at: float = dataclasses.field(default_factory=time.monotonic)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)
    sent_ids: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)

    def send(self, message: agent_pb2.ManagerMessage) -> None:
        self.queue.put_nowait(message)

    def first_sending(self, action_id: str) -> bool:
        """False if this stream already carried ``action_id`` (the agent would drop the
        copy by id; not sending it saves the agent the work and the stream the bytes)."""
        if action_id in self.sent_ids:
            return False
        self.sent_ids[action_id] = None
        if len(self.sent_ids) > RECENT_IDS:
            self.sent_ids.popitem(last=False)
        return True

    def close(self) -> None:
        self.queue.put_nowait(_CLOSE)


class SessionRegistry:
    def __init__(self) -> None:
        self.sessions: dict[int, AgentSession] = {}

    def attach(self, session: AgentSession) -> None:
        old = self.sessions.get(session.host_id)
        if old is not None:
            old.close()
        self.sessions[session.host_id] = session

    def detach(self, session: AgentSession) -> bool:
        """Forget ``session``; False if a newer session of the host already replaced it."""
        if self.sessions.get(session.host_id) is session:
            del self.sessions[session.host_id]
            return True
        return False

    def disconnect(self, host_id: int) -> None:
        session = self.sessions.get(host_id)
        if session is not None:
            session.close()

    # --- Transport ---------------------------------------------------------------------

    def is_connected(self, host_id: int) -> bool:
        return host_id in self.sessions

    def deliver(self, host_id: int, specs: list[ActionSpec]) -> bool:
        session = self.sessions.get(host_id)
        if session is None:
            return False
        for spec in specs:
            if not session.first_sending(spec.id):
                continue
            session.send(agent_pb2.ManagerMessage(action_request=agent_pb2.ActionRequest(
                action_id=spec.id, name=spec.name, args_json=spec.args_json,
                deadline_ms=spec.deadline_ms)))
        return True

    def cancel(self, host_id: int, action_id: str) -> None:
        session = self.sessions.get(host_id)
        if session is not None:
            session.send(agent_pb2.ManagerMessage(cancel=agent_pb2.Cancel(action_id=action_id)))

    def count_by_role(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for session in self.sessions.values():
            for role in session.roles:
                counts[role] = counts.get(role, 0) + 1
        return counts
