"""State machines from tables: routes, available transitions, refusals."""

import itertools

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from manager.domain.host_lifecycle import HOST_MACHINE as HOST
from manager.engine.statemachine import InvalidTransition, StateMachine, Transition

LNET = StateMachine("lnet", "unconfigured", (
    Transition(("unconfigured",), "EnableLNetJob", "lnet_unloaded"),
    Transition(("lnet_unloaded",), "LoadLNetJob", "lnet_down", "Load LNet"),
    Transition(("lnet_down",), "StartLNetJob", "lnet_up", "Start LNet"),
    Transition(("lnet_up",), "StopLNetJob", "lnet_down", "Stop LNet"),
    Transition(("lnet_down",), "UnloadLNetJob", "lnet_unloaded", "Unload LNet"),
    Transition(("lnet_unloaded",), "UnconfigureLNetJob", "unconfigured"),
))


def test_route_is_the_shortest_chain_of_jobs():
    assert [t.job for t in LNET.route("lnet_up", "lnet_unloaded")] == ["StopLNetJob", "UnloadLNetJob"]
    assert [t.job for t in HOST.route("unconfigured", "managed")] == [
        "InstallHostPackagesJob", "SetupHostJob"]
    assert LNET.route("lnet_up", "lnet_up") == []


def test_available_offers_every_reachable_state_with_the_last_jobs_verb():
    assert LNET.available("lnet_up") == [
        {"state": "lnet_down", "verb": "Stop LNet"},
        {"state": "lnet_unloaded", "verb": "Unload LNet"}]  # unconfigured: its last job has no verb
    assert HOST.available("working") == [{"state": "removed", "verb": "Remove"}]


def test_nothing_is_offered_while_write_locked_or_immutable():
    assert LNET.available("lnet_up", write_locked=True) == []
    assert HOST.available("removed") == []


def test_unreachable_state_names_the_allowed_ones():
    with pytest.raises(InvalidTransition) as err:
        HOST.route("managed", "monitored")
    assert err.value.allowed == ["removed"]
    assert "available: removed" in str(err.value)


def test_a_table_must_mention_its_initial_state():
    with pytest.raises(ValueError, match="initial"):
        StateMachine("x", "nowhere", (Transition(("a",), "J", "b"),))


STATES = ["a", "b", "c", "d", "e"]
tables = st.lists(st.tuples(st.sampled_from(STATES), st.sampled_from(STATES),
                            st.one_of(st.none(), st.text("vw", min_size=1, max_size=2))),
                  min_size=1, max_size=12)


@given(tables, st.sampled_from(STATES))
def test_offered_states_are_reachable_by_routes_no_longer_than_any_path(rows, start):
    transitions = tuple(Transition((a,), f"J{i}", b, verb)
                        for i, (a, b, verb) in enumerate(rows) if a != b)
    assume(transitions)
    machine = StateMachine("m", transitions[0].from_states[0], transitions)
    distance = shortest_distances(transitions, start)
    for offer in machine.available(start):
        chain = machine.route(start, offer["state"])
        assert chain[0].from_states == (start,) and chain[-1].to_state == offer["state"]
        assert chain[-1].verb == offer["verb"]
        assert all(x.to_state in y.from_states for x, y in itertools.pairwise(chain))
        assert len(chain) == distance[offer["state"]]
    offered = {o["state"] for o in machine.available(start)}
    assert offered == {t.to_state for t in transitions if t.verb and t.to_state in distance
                       and t.to_state != start and machine.route(start, t.to_state)[-1].verb}


def shortest_distances(transitions, start):
    """Bellman-Ford relaxation: an independent way to the same shortest route lengths."""
    distance = {start: 0}
    for _ in STATES:
        for t in transitions:
            for origin in t.from_states:
                if origin in distance and distance[origin] + 1 < distance.get(t.to_state, 99):
                    distance[t.to_state] = distance[origin] + 1
    return distance
