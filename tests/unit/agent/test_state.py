"""The state directory: atomic writes, modes, all-or-nothing identity, full disks, outbox."""

import errno
import json
import os
import stat

import pytest

from agent import state as state_mod
from agent.state import AgentRecord, Identity, Outbox, StateDir, StateError
from protos import agent_pb2


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def make_record(**kw):
    fields = {"manager_url": "https://mgr:8443", "agent_address": "mgr:8444", "host_id": 7,
              "fqdn": "node1.example.com", "roles": ["compute"],
              "registered_at": "2026-01-01T00:00:00+00:00"}
    return AgentRecord(**{**fields, **kw})


@pytest.fixture
def registered(tmp_path):
    state = StateDir(str(tmp_path / "agent"))
    state.save_registration(Identity(b"old key", b"old cert", b"ca"), make_record())
    return state


def test_registration_files_are_private(registered):
    for path in (registered.key_path, registered.cert_path, registered.ca_path,
                 registered.record_path):
        assert mode(path) == 0o600
    for directory in (registered.root, registered.identity_dir):
        assert mode(directory) == 0o700
    assert registered.is_registered()
    assert registered.load_record() == make_record()
    assert registered.load_identity() == Identity(b"old key", b"old cert", b"ca")


def test_existing_directory_modes_are_tightened(tmp_path):
    root = tmp_path / "agent"
    root.mkdir(mode=0o755)
    StateDir(str(root)).write_status({"connected": False})
    assert mode(root) == 0o700
    assert mode(root / "status.json") == 0o600


def test_no_temp_files_are_left_behind(registered):
    registered.write_status({"connected": True})
    leftovers = [n for _, _, names in os.walk(registered.root) for n in names
                 if n.startswith(".tmp-")]
    assert leftovers == []


def _fail_on_write(monkeypatch, after: int):
    """os.write succeeds ``after`` times, then the disk is full."""
    calls = {"n": 0}
    real_write = os.write

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)
    monkeypatch.setattr(state_mod.os, "write", write)


@pytest.mark.parametrize("after", [0, 1, 2, 3])
def test_full_disk_keeps_the_old_identity_whole(registered, monkeypatch, after):
    _fail_on_write(monkeypatch, after)
    with pytest.raises(StateError) as raised:
        registered.save_registration(Identity(b"new key", b"new cert", b"new ca"),
                                     make_record(host_id=8))
    monkeypatch.undo()
    assert "No space left on device" in str(raised.value)
    assert "previous contents were kept" in str(raised.value)
    assert registered.load_identity() == Identity(b"old key", b"old cert", b"ca")
    assert registered.load_record().host_id == 7
    assert not [n for n in os.listdir(registered.identity_dir) if n.startswith(".tmp-")]


def test_failed_fsync_keeps_the_old_file(registered, monkeypatch):
    def fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(state_mod.os, "fsync", fsync)
    with pytest.raises(StateError, match=r"key\.pem: Input/output error"):
        registered.save_registration(Identity(b"new key", b"new cert", b"ca"), make_record())
    monkeypatch.undo()
    assert registered.load_identity().key_pem == b"old key"


def test_unwritable_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="cannot create directory"):
        StateDir(str(blocker / "agent")).write_status({})


def test_status_round_trip_and_damage(tmp_path):
    state = StateDir(str(tmp_path))
    assert state.read_status() is None
    state.write_status({"connected": True, "pid": 1})
    assert state.read_status() == {"connected": True, "pid": 1}
    (tmp_path / "status.json").write_text("{half")
    assert state.read_status() is None


def test_run_lock_is_exclusive(tmp_path):
    state = StateDir(str(tmp_path))
    fd = state.lock_for_run()
    try:
        with pytest.raises(StateError, match="another shepherd-agent run"):
            state.lock_for_run()
    finally:
        os.close(fd)
    os.close(state.lock_for_run())


def _result(action_id, success=True):
    return agent_pb2.ActionResult(action_id=action_id, success=success, result_json="{}")


def test_outbox_keeps_results_until_deleted(tmp_path):
    outbox = Outbox(str(tmp_path / "outbox"))
    assert outbox.get("a1") is None
    outbox.put(_result("a1"))
    outbox.put(_result("weird/../id", success=False))
    assert mode(tmp_path / "outbox") == 0o700
    assert mode(tmp_path / "outbox" / "a1.json") == 0o600
    reopened = Outbox(str(tmp_path / "outbox"))
    assert reopened.ids() == {"a1", "weird/../id"}
    assert reopened.get("weird/../id").success is False
    reopened.delete("a1")
    reopened.delete("never-stored")
    assert [r.action_id for r in Outbox(str(tmp_path / "outbox")).all()] == ["weird/../id"]
    assert any(n.startswith("sha256-") for n in os.listdir(tmp_path / "outbox"))


def test_damaged_outbox_entry_is_skipped(tmp_path):
    outbox = Outbox(str(tmp_path))
    outbox.put(_result("good"))
    (tmp_path / "bad.json").write_text(json.dumps({"nonsense": 1}))
    assert Outbox(str(tmp_path)).ids() == {"good"}
