"""The session registry: one stream per host, and each action sent once per stream."""

from __future__ import annotations

from manager.agents import sessions
from manager.agents.sessions import AgentSession, SessionRegistry
from manager.engine.dispatch import ActionSpec


def _sent(session: AgentSession) -> list[str]:
    ids = []
    while not session.queue.empty():
        ids.append(session.queue.get_nowait().action_request.action_id)
    return ids


def test_an_action_both_pending_and_new_at_connect_is_sent_once():
    registry = SessionRegistry()
    session = AgentSession(1, "n1.example", ("compute",))
    registry.attach(session)
    spec = ActionSpec("a1", "agent.ping", "{}", 0)
    assert registry.deliver(1, [spec, ActionSpec("a2", "agent.ping", "{}", 0)])
    assert registry.deliver(1, [spec])
    assert _sent(session) == ["a1", "a2"]


def test_a_new_stream_sends_again_what_the_old_one_carried():
    registry = SessionRegistry()
    old = AgentSession(1, "n1.example", ())
    registry.attach(old)
    registry.deliver(1, [ActionSpec("a1", "agent.ping", "{}", 0)])
    new = AgentSession(1, "n1.example", ())
    registry.attach(new)
    registry.deliver(1, [ActionSpec("a1", "agent.ping", "{}", 0)])
    assert _sent(new) == ["a1"]


def test_the_memory_of_sent_ids_is_bounded(monkeypatch):
    monkeypatch.setattr(sessions, "RECENT_IDS", 3)
    session = AgentSession(1, "n1.example", ())
    for n in range(10):
        assert session.first_sending(f"a{n}")
    assert len(session.sent_ids) == 3 and list(session.sent_ids) == ["a7", "a8", "a9"]
    assert session.first_sending("a0")  # long forgotten: sent again
