"""Planning from tables with no I/O: chains, requirements, locks, wait_for, interleavings."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from manager.engine.planning import LockTable, Requirement, plan
from manager.engine.statemachine import StateMachine, Transition

LNET = StateMachine("lnet", "down", (
    Transition(("down",), "StartLNetJob", "up", "Start LNet"),
    Transition(("up",), "StopLNetJob", "down", "Stop LNet"),
))
TARGET = StateMachine("target", "unformatted", (
    Transition(("unformatted",), "FormatTargetJob", "formatted", "Format"),
    Transition(("formatted",), "StartTargetJob", "mounted", "Start"),
    Transition(("mounted",), "StopTargetJob", "formatted", "Stop"),
))
MACHINES = {"lnet": LNET, "target": TARGET}


def requirements(key, current, to_state):
    """A target on host N needs LNet on host N up to format or start."""
    if key[0] == "target" and to_state in ("formatted", "mounted"):
        yield Requirement(("lnet", key[1] // 10), ("up",), "up")


def planner(states):
    locks = LockTable()

    def run(key, target):
        return plan(locks, key, target, lambda k: states[k], lambda k: MACHINES[k[0]], requirements)
    return locks, run


def test_a_chain_with_its_requirement_ahead_of_it():
    _, run = planner({("target", 10): "unformatted", ("lnet", 1): "down"})
    jobs = run(("target", 10), "mounted")
    assert [j.job for j in jobs] == ["StartLNetJob", "FormatTargetJob", "StartTargetJob"]
    start_lnet, format_, start = jobs
    assert format_.reads == {("lnet", 1)} and format_.writes == {("target", 10)}
    assert format_.wait_for == {start_lnet.id}
    assert start.wait_for == {start_lnet.id, format_.id}  # it reads LNet too


def test_a_met_requirement_adds_no_job():
    _, run = planner({("target", 10): "unformatted", ("lnet", 1): "up"})
    assert [j.job for j in run(("target", 10), "formatted")] == ["FormatTargetJob"]


def test_independent_objects_do_not_wait_for_each_other():
    _, run = planner({("target", 10): "formatted", ("target", 20): "formatted",
                          ("lnet", 1): "up", ("lnet", 2): "up"})
    a, = run(("target", 10), "mounted")
    b, = run(("target", 20), "mounted")
    assert a.wait_for == set() and b.wait_for == set()


def test_a_writer_waits_for_the_readers_before_it():
    _, run = planner({("target", 10): "formatted", ("target", 11): "formatted",
                          ("lnet", 1): "up"})
    reader_a, = run(("target", 10), "mounted")
    reader_b, = run(("target", 11), "mounted")
    stop, = run(("lnet", 1), "down")
    assert reader_a.wait_for == reader_b.wait_for == set()  # readers share
    assert stop.wait_for == {reader_a.id, reader_b.id}


def test_a_second_request_starts_where_the_queued_jobs_leave_the_object():
    locks, run = planner({("lnet", 1): "down"})
    first, = run(("lnet", 1), "up")
    second, = run(("lnet", 1), "down")
    assert (second.from_state, second.wait_for) == ("up", {first.id})
    assert locks.write_locked(("lnet", 1))
    locks.finish(first.id)
    locks.finish(second.id)
    assert not locks.write_locked(("lnet", 1))


@settings(max_examples=200, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(min_value=1, max_value=25))
def test_random_interleavings_never_run_conflicting_jobs_together_nor_deadlock(rnd: random.Random,
                                                                               steps: int):
    """Plan requests and finish runnable jobs in a random order; whenever jobs run at once,
    no two of them conflict (write/write or write/read on one object), and something can
    always run until every job is done."""
    states = {("target", t): "unformatted" for t in (10, 11, 20)} | {("lnet", 1): "down",
                                                                     ("lnet", 2): "down"}
    locks, run = planner(dict(states))
    done: set[int] = set()
    for _ in range(steps):
        key = rnd.choice(sorted(states))
        target = rnd.choice(sorted(MACHINES[key[0]].states()))
        try:
            run(key, target)
        except ValueError:
            pass  # unreachable from where the queue leaves it: refused, nothing planned
        runnable = [j for j in locks.jobs.values() if j.wait_for <= done]
        assert runnable or not locks.jobs, "deadlock: jobs left and none can run"
        running = rnd.sample(runnable, k=min(len(runnable), rnd.randint(1, 3))) if runnable else []
        for a in running:
            for b in running:
                if a is not b:
                    assert not (a.writes & (b.writes | b.reads)), "conflicting jobs ran together"
        for job in running:
            done.add(job.id)
            locks.finish(job.id)
    while locks.jobs:
        runnable = [j for j in locks.jobs.values() if j.wait_for <= done]
        assert runnable, "deadlock while draining"
        done.add(runnable[0].id)
        locks.finish(runnable[0].id)
