"""``shepherd-agent`` commands: status exit codes, refusals, and a real ``run`` process."""

import asyncio
import json
import os
import signal
import sys

import pytest
from click.testing import CliRunner

from agent.__main__ import main
from agent.state import AgentRecord, StateDir
from protos import agent_pb2
from tests.unit.agent.factories import make_request
from tests.unit.agent.fake_manager import FakeManager, start_manager


def registered_state(path, pki, agent_address="127.0.0.1:1"):
    state = StateDir(str(path))
    state.save_registration(pki.identity, AgentRecord(
        manager_url="https://127.0.0.1:8443", agent_address=agent_address, host_id=7,
        fqdn="node1.example.com", roles=["compute"],
        registered_at="2026-01-01T00:00:00+00:00"))
    return state


def cli(*args):
    return CliRunner().invoke(main, list(args))


def test_version():
    result = cli("--version")
    assert result.exit_code == 0 and "shepherd-agent" in result.output


def test_status_of_an_unregistered_machine(tmp_path):
    result = cli("status", "--state-dir", str(tmp_path))
    assert result.exit_code == 4 and "not registered" in result.output


@pytest.mark.parametrize(("status", "code", "text"), [
    (None, 3, "run: not running (no status recorded)"),
    ({"connected": True, "since": "t0", "pid": os.getpid()}, 0, "run: connected since t0"),
    ({"connected": False, "since": "t0", "last_error": "UNAVAILABLE: x", "pid": os.getpid()},
     3, "disconnected since t0"),
    ({"connected": True, "since": "t0", "pid": 2 ** 22 + 1}, 3, "not running"),
])
def test_status_of_a_registered_machine(tmp_path, pki, status, code, text):
    state = registered_state(tmp_path, pki)
    if status is not None:
        state.write_status(status)
    result = cli("status", "--state-dir", str(tmp_path))
    assert result.exit_code == code
    assert "registered: host 7 (node1.example.com), roles compute" in result.output
    assert text in result.output


def test_register_refuses_to_replace_a_registration(tmp_path, pki):
    registered_state(tmp_path, pki)
    result = cli("register", "--manager", "https://mgr:8443", "--token", "s",
                 "--ca-sha256", "ab" * 32, "--state-dir", str(tmp_path))
    assert result.exit_code == 1 and "use --force" in result.output


def test_register_refuses_unknown_roles(tmp_path):
    result = cli("register", "--manager", "https://mgr:8443", "--token", "s", "--ca-sha256",
                 "ab" * 32, "--roles", "compute,wizard", "--state-dir", str(tmp_path))
    assert result.exit_code == 2 and "roles must be among" in result.output


def test_run_needs_a_registration(tmp_path):
    result = cli("run", "--state-dir", str(tmp_path))
    assert result.exit_code == 4 and "not registered" in result.output


async def _wait_for(predicate, timeout=10.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_run_connects_and_stops_cleanly_on_sigterm(tmp_path, pki):
    async def scenario():
        manager = FakeManager()
        server, target = await start_manager(pki, manager)
        state = registered_state(tmp_path, pki, target)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent", "run", "--state-dir", str(tmp_path),
            stderr=asyncio.subprocess.PIPE)
        try:
            stream = await asyncio.wait_for(manager.streams.get(), 10)
            hello = (await stream.next(timeout=10)).hello
            assert hello.inventory.fqdn == "node1.example.com" and hello.inventory.cpu_count
            stream.send(welcome=agent_pb2.Welcome(host_id=7, heartbeat_interval_s=30))
            await _wait_for(lambda: (state.read_status() or {}).get("connected"))
            assert cli("status", "--state-dir", str(tmp_path)).exit_code == 0
            stream.send(action_request=make_request("s1", "agent.sleep", {"seconds": 60}))
            assert (await stream.next()).action_progress.action_id == "s1"
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            if process.returncode is None:
                process.kill()
            await server.stop(None)
        return state, (await process.stderr.read()).decode()

    state, log = asyncio.run(scenario())
    assert "connected to 127.0.0.1" in log and "Traceback" not in log
    status = state.read_status()
    assert (status["connected"], status["last_error"]) == (False, "stopped")
    assert state.outbox.ids() == set()
    result = cli("status", "--state-dir", str(tmp_path))
    assert result.exit_code == 3 and "not running" in result.output
    assert json.loads((tmp_path / "agent.json").read_text())["host_id"] == 7
