"""A full state directory: registration checks for room before the manager spends anything,
and the outbox holds in memory the results the disk refuses, until they are acknowledged.

A real full filesystem is exercised in tests/integration/test_agent_disk_full.py; here the
disk is full by a monkeypatched ``os.write``, as in test_state.py.
"""

import asyncio
import errno
import os

import pytest

from agent import state as state_mod
from agent.registration import RegistrationError, register
from agent.state import IDENTITY_ROOM, Outbox, StateDir, StateError
from protos import agent_pb2
from tests.unit.agent.factories import FakeMachine, make_request, make_runner, results


def _no_space(fd, data):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def full_disk(monkeypatch):
    monkeypatch.setattr(state_mod.os, "write", _no_space)
    return monkeypatch


def all_files(root):
    return [n for _, _, names in os.walk(root) for n in names]


# --- registration ----------------------------------------------------------------------------

def test_prepare_writes_the_room_it_checks_and_leaves_nothing(tmp_path, monkeypatch):
    written = []
    real_write = os.write

    def write(fd, data):
        written.append(len(data))
        return real_write(fd, data)
    monkeypatch.setattr(state_mod.os, "write", write)
    state = StateDir(str(tmp_path / "agent"))
    state.prepare()
    assert sum(written) == IDENTITY_ROOM
    assert os.path.isdir(state.identity_dir) and all_files(state.root) == []


def test_prepare_on_a_full_disk_names_the_directory_and_the_reason(tmp_path, full_disk):
    state = StateDir(str(tmp_path / "agent"))
    with pytest.raises(StateError) as raised:
        state.prepare()
    assert str(raised.value) == \
        f"cannot write 64 KiB in {state.identity_dir}: No space left on device"
    assert all_files(state.root) == []


def test_full_disk_fails_registration_before_the_manager_is_asked(tmp_path, full_disk):
    # Port 1 refuses connections: reaching the network would fail with "cannot fetch".
    with pytest.raises(RegistrationError) as raised:
        register("https://127.0.0.1:1", "t", "ab" * 32, ["compute"], FakeMachine(),
                 StateDir(str(tmp_path / "agent")), timeout=2)
    assert str(raised.value).endswith("No space left on device (the token was not used)")


# --- outbox ----------------------------------------------------------------------------------

def _result(action_id):
    return agent_pb2.ActionResult(action_id=action_id, success=True, result_json="{}")


def test_outbox_holds_a_refused_result_until_it_is_deleted(tmp_path, full_disk):
    outbox = Outbox(str(tmp_path / "outbox"))
    with pytest.raises(StateError, match="No space left on device"):
        outbox.put(_result("held"))
    full_disk.undo()
    outbox.put(_result("saved"))
    assert outbox.get("held") == _result("held")
    assert [r.action_id for r in outbox.all()] == ["held", "saved"]
    assert os.listdir(tmp_path / "outbox") == ["saved.json"]  # no partial or temp file
    outbox.delete("held")
    assert outbox.get("held") is None
    assert [r.action_id for r in outbox.all()] == ["saved"]


def test_result_the_disk_refused_is_resent_not_run_again(tmp_path, full_disk):
    async def scenario():
        runner, sent, _ = make_runner(tmp_path)
        runner.detach()  # the stream is down when the action ends
        runner.submit(make_request("a1", args={"echo": "x"}))
        while runner.running_ids():
            await asyncio.sleep(0.01)
        runner.attach(sent.append)  # reconnected: Welcome, then the manager redelivers
        pending = await runner.unacknowledged()
        runner.submit(make_request("a1", args={"echo": "x"}))
        running = runner.running_ids()
        await runner.acknowledge(["a1"])
        return sent, pending, running, await runner.unacknowledged()
    sent, pending, running, after_ack = asyncio.run(scenario())
    assert [r.action_id for r in pending] == ["a1"]
    assert running == []  # not started again
    assert [r.action_id for r in results(sent)] == ["a1"]  # the redelivery got the result
    assert after_ack == []


# --- run status ------------------------------------------------------------------------------

def test_a_refused_status_write_removes_the_old_status_and_status_says_unknown(tmp_path,
                                                                               monkeypatch):
    from agent.__main__ import _run_status
    state = StateDir(str(tmp_path / "agent"))
    state.write_status({"connected": True, "since": "then", "last_error": "", "pid": os.getpid()})
    assert _run_status(state.read_status(), False)[0]
    monkeypatch.setattr(state_mod.os, "write", _no_space)
    with pytest.raises(StateError, match="No space left"):
        state.write_status({"connected": False, "since": "now", "last_error": "lost",
                            "pid": os.getpid()})
    assert state.read_status() is None  # not the stale "connected"
    assert not state.run_lock_held()
    fd = state.lock_for_run()
    try:
        assert state.run_lock_held()
        connected, line = _run_status(state.read_status(), state.run_lock_held())
        assert not connected and line.startswith("running, connection unknown")
    finally:
        os.close(fd)
    assert not state.run_lock_held()
    assert _run_status(None, False) == (False, "not running (no status recorded)")
