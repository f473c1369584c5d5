"""The action runner: de-duplication, outbox, acknowledgement, cancel, deadlines, limits."""

import asyncio
import json

from agent.runner import CANCELLED, DEADLINE_PASSED
from tests.unit.agent.factories import (
    make_request,
    make_runner,
    progress_lines,
    results,
)


async def settle(runner, timeout=5.0):
    """Wait until no action is running."""
    async with asyncio.timeout(timeout):
        while runner.running_ids():
            await asyncio.sleep(0.01)


def test_result_goes_to_the_outbox_before_it_is_sent(tmp_path):
    async def scenario():
        runner, sent, outbox = make_runner(tmp_path)
        runner.attach(lambda m: (sent.append(m), seen.append(outbox.get("a1"))))
        runner.submit(make_request("a1", args={"echo": "x"}))
        await settle(runner)
        return sent, outbox
    seen = []
    sent, outbox = asyncio.run(scenario())
    assert [r.action_id for r in results(sent)] == ["a1"]
    assert seen == [results(sent)[0]]
    assert outbox.ids() == {"a1"}


def test_duplicates_run_once_and_finished_ones_resend_the_stored_result(tmp_path):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 0.2}))
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 0.2}))
        assert runner.running_ids() == ["s1"]
        await settle(runner)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 0.2}))
        assert runner.running_ids() == []
        return sent
    sent = asyncio.run(scenario())
    assert [r.action_id for r in results(sent)] == ["s1", "s1"]
    assert results(sent)[0] == results(sent)[1]


def test_acknowledged_results_leave_the_outbox(tmp_path):
    async def scenario():
        runner, _, outbox = make_runner(tmp_path)
        for action_id in ("a1", "a2"):
            runner.submit(make_request(action_id))
        await settle(runner)
        assert sorted(r.action_id for r in await runner.unacknowledged()) == ["a1", "a2"]
        await runner.acknowledge(["a1", "unknown"])
        return outbox
    assert asyncio.run(scenario()).ids() == {"a2"}


def test_a_delivery_after_the_ack_is_stale_and_does_not_run_again(tmp_path):
    """On reconnect the manager's redelivery can race its own ack of the re-sent result."""
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.submit(make_request("a1"))
        await settle(runner)
        await runner.acknowledge(["a1"])
        runner.submit(make_request("a1"))
        assert runner.running_ids() == []
        await settle(runner)
        return sent
    assert [r.action_id for r in results(asyncio.run(scenario()))] == ["a1"]


def test_cancel_stops_the_action_with_a_failed_result(tmp_path):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 60}))
        await asyncio.sleep(0.05)
        runner.cancel("s1")
        runner.cancel("not-running")
        await settle(runner)
        return sent
    (result,) = results(asyncio.run(scenario()))
    assert not result.success and result.error == CANCELLED


def test_past_deadline_fails_without_running(tmp_path):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 1}, deadline_in=-1))
        await settle(runner)
        return sent
    sent = asyncio.run(scenario())
    assert [(r.success, r.error) for r in results(sent)] == [(False, DEADLINE_PASSED)]
    assert progress_lines(sent) == []


def test_deadline_reached_while_running_cancels(tmp_path):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 60}, deadline_in=0.2))
        await settle(runner)
        return sent
    (result,) = results(asyncio.run(scenario()))
    assert (result.success, result.error) == (False, DEADLINE_PASSED)


def test_concurrency_limit_queues_extra_actions(tmp_path):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path, max_actions=2)
        for i in range(3):
            runner.submit(make_request(f"s{i}", "agent.sleep", {"seconds": 0.3}))
        await asyncio.sleep(0.45)
        done_early = [r.action_id for r in results(sent)]
        await settle(runner)
        return done_early, sent
    done_early, sent = asyncio.run(scenario())
    assert sorted(done_early) == ["s0", "s1"]
    assert sorted(r.action_id for r in results(sent)) == ["s0", "s1", "s2"]


def test_close_stops_actions_without_reporting(tmp_path):
    async def scenario():
        runner, sent, outbox = make_runner(tmp_path)
        runner.submit(make_request("s1", "agent.sleep", {"seconds": 60}))
        await asyncio.sleep(0.05)
        await runner.close()
        return sent, outbox
    sent, outbox = asyncio.run(scenario())
    assert results(sent) == [] and outbox.ids() == set()


def test_progress_is_dropped_while_detached_but_the_result_is_kept(tmp_path):
    async def scenario():
        runner, sent, outbox = make_runner(tmp_path)
        runner.detach()
        runner.submit(make_request("p1", args={"echo": "offline"}))
        await settle(runner)
        return sent, outbox
    sent, outbox = asyncio.run(scenario())
    assert sent == []
    assert json.loads(outbox.get("p1").result_json)["echo"] == "offline"
