"""The agent's stream against a fake manager on 127.0.0.1 with real mutual TLS."""

import asyncio
import json
import time
import types

from agent import __version__
from agent.actions import Registry, action
from agent.config import AgentConfig
from agent.connection import REFUSED, AgentConnection
from agent.runner import ActionRunner
from agent.state import Outbox
from protos import agent_pb2
from tests.unit.agent.factories import FakeMachine, make_request
from tests.unit.agent.fake_manager import FakeManager, start_manager

FAST = AgentConfig(backoff_min_s=0.05, backoff_max_s=0.2, connect_timeout_s=5)


def counting_registry(executions):
    @action("test.count", schema={"type": "object"})
    async def count(args, ctx):
        executions.append(ctx.action_id)
        ctx.progress("counting")
        await asyncio.sleep(0.2)
        return {"count": len(executions)}
    return Registry.from_modules([types.SimpleNamespace(count=count)])


def welcome(heartbeat_s=1):
    return agent_pb2.Welcome(host_id=7, protocol_version=1, heartbeat_interval_s=heartbeat_s)


def test_results_survive_a_dropped_stream_until_acknowledged(pki, tmp_path):
    executions, statuses = [], []
    outbox = Outbox(str(tmp_path / "outbox"))

    async def scenario():
        manager = FakeManager()
        server, target = await start_manager(pki, manager)
        runner = ActionRunner(counting_registry(executions), FakeMachine(), outbox, 8)
        connection = AgentConnection(target, pki.identity, FakeMachine(), ["storage", "bmc"],
                                     runner, FAST, on_status=statuses.append)
        stop = asyncio.Event()
        agent = asyncio.create_task(connection.run(stop))
        try:
            await first_connection(manager)
            await second_connection(manager)
        finally:
            stop.set()
            await asyncio.wait_for(agent, 5)
            await runner.close()
            await server.stop(None)

    async def first_connection(manager):
        stream = await asyncio.wait_for(manager.streams.get(), 5)
        assert stream.peer_cn == "node1.example.com"
        hello = await stream.next()
        assert hello.protocol_version == 1
        assert list(hello.hello.roles) == ["storage", "bmc"]
        assert hello.hello.version == __version__
        assert hello.hello.inventory.fqdn == "node1.example.com"
        assert list(hello.hello.running_action_ids) == []
        stream.send(welcome=welcome())
        request = make_request("act-1", "test.count")
        stream.send(action_request=request)
        stream.send(action_request=request)
        progress = await stream.next()
        assert progress.action_progress.line == "counting"
        result = await stream.next()
        assert result.action_result.action_id == "act-1" and result.action_result.success
        assert json.loads(result.action_result.result_json) == {"count": 1}
        await stream.quiet(1.0)
        assert stream.heartbeats >= 1
        assert executions == ["act-1"]
        stream.drop()

    async def second_connection(manager):
        stream = await asyncio.wait_for(manager.streams.get(), 5)
        assert (await stream.next()).HasField("hello")
        stream.send(welcome=welcome(heartbeat_s=30))
        resent = await stream.next()
        assert resent.action_result.action_id == "act-1"
        assert json.loads(resent.action_result.result_json) == {"count": 1}
        stream.send(action_request=make_request("act-1", "test.count"))
        again = await stream.next()
        assert again.action_result == resent.action_result
        assert executions == ["act-1"]
        stream.send(result_ack=agent_pb2.ResultAck(action_ids=["act-1"]))
        async with asyncio.timeout(5):
            while outbox.ids():
                await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert [s.connected for s in statuses] == [True, False, True, False]
    assert statuses[1].last_error == "stream closed by the manager"
    assert statuses[-1].last_error == "stopped"
    assert Outbox(str(tmp_path / "outbox")).ids() == set()


def test_refused_certificate_is_named_and_retried_at_the_longest_delay(pki, tmp_path, caplog):
    statuses = []

    async def scenario():
        server, target = await start_manager(pki, FakeManager(refuse=True))
        runner = ActionRunner(Registry([]), FakeMachine(), Outbox(str(tmp_path)), 1)
        connection = AgentConnection(target, pki.identity, FakeMachine(), ["compute"], runner,
                                     FAST, on_status=statuses.append)
        stop = asyncio.Event()
        agent = asyncio.create_task(connection.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(agent, 5)
        await server.stop(None)

    asyncio.run(scenario())
    assert statuses[0].connected is False
    assert statuses[0].last_error.startswith(REFUSED)
    assert "host removed" in statuses[0].last_error
    assert "retrying in 0.2 s" in caplog.text
    assert 2 <= len(statuses) <= 4


def test_unreachable_manager_is_retried_with_backoff(pki, tmp_path):
    statuses = []

    async def scenario():
        runner = ActionRunner(Registry([]), FakeMachine(), Outbox(str(tmp_path)), 1)
        connection = AgentConnection("127.0.0.1:1", pki.identity, FakeMachine(), ["compute"],
                                     runner, FAST, on_status=statuses.append)
        stop = asyncio.Event()
        agent = asyncio.create_task(connection.run(stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(agent, 5)

    asyncio.run(scenario())
    assert len(statuses) >= 3
    assert statuses[0].last_error.startswith("UNAVAILABLE")
    assert len({s.since for s in statuses[:-1]}) == 1


class SlowMachine(FakeMachine):
    def inventory(self):
        time.sleep(0.3)  # the call fails (connection refused) before Hello is written
        return super().inventory()


def test_a_call_that_failed_before_hello_reports_its_own_status(pki, tmp_path):
    statuses = []

    async def scenario():
        runner = ActionRunner(Registry([]), SlowMachine(), Outbox(str(tmp_path)), 1)
        connection = AgentConnection("127.0.0.1:1", pki.identity, SlowMachine(), ["compute"],
                                     runner, FAST, on_status=statuses.append)
        stop = asyncio.Event()
        agent = asyncio.create_task(connection.run(stop))
        await asyncio.wait_for(_first_status(statuses), 5)
        stop.set()
        await asyncio.wait_for(agent, 5)

    asyncio.run(scenario())
    assert statuses[0].last_error.startswith("UNAVAILABLE: failed to connect")


async def _first_status(statuses):
    while not statuses:
        await asyncio.sleep(0.01)
