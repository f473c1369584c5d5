"""A real full filesystem under the agent's state directory (issue 14, "Faults").

The state directory is a 256 KiB tmpfs mounted for the test and filled by a filler file
written until the kernel answers ENOSPC, so every write the agent attempts meets the real
error, from the real syscall, in the real ``shepherd-agent`` process (run inside a network
namespace against an in-process manager, as in test_agents_end_to_end.py). The unit tests
in tests/unit/agent/test_state.py cover the same paths with a monkeypatched ``os.write``.

Checked: ``register`` into a full directory fails before the manager spends a token credit,
says why in one line and leaves no key, certificate or temp file; a registered agent whose
disk fills keeps a whole, loadable identity, still delivers its actions' results (the
outbox write fails with a logged error and the result is held in memory, so even one that
ends while the stream is down is re-sent, not run again) and stops cleanly although
status.json cannot be updated. Needs root (``mount``); skipped otherwise.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from manager.db.hosts import RegistrationToken
from tests.agents_fixture import AgentProcess, Lan, wait_until

SIZE = "256k"
FILLER = "filler"
CONNECT_TIMEOUT = 20  # first connection: process start, TLS, Hello/Welcome
NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
IDENTITY = ("identity/key.pem", "identity/cert.pem", "identity/ca.pem", "agent.json")


class SmallDisk:
    """A tmpfs of ``SIZE`` mounted at ``path``; ``fill`` uses up every block of it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.filler = os.path.join(path, FILLER)

    def mount(self) -> SmallDisk:
        os.makedirs(self.path)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs",
                               self.path], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for a full state dir (needs root or "
                        f"CAP_SYS_ADMIN): {done.stderr.strip()}")
        return self

    def unmount(self) -> None:
        if subprocess.run(["umount", self.path], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", self.path], capture_output=True, check=True)

    def fill(self) -> None:
        """Append to the filler until the kernel refuses: not one block is left."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        os.unlink(self.filler)


@pytest.fixture
def disk(tmp_path):
    small = SmallDisk(str(tmp_path / "agent0")).mount()
    yield small
    small.unmount()


@pytest.fixture
def agent(disk, hosts):
    """The agent on hosts[0] whose state dir is ``disk`` (its run log is beside it); killed
    before the disk is unmounted."""
    made = AgentProcess(hosts[0], disk.path, "node0.test")
    yield made
    made.kill()


def leftovers(agent: AgentProcess) -> list[str]:
    """Files of the state dir other than the filler and the run lock."""
    return [f for f in agent.files() if f not in (FILLER, "run.lock")]


def credits_left(lan: Lan, token: dict) -> int:
    return lan.manager.db(lambda: RegistrationToken.get_by_id(token["id"]).credits)


def identity_bytes(agent: AgentProcess) -> dict[str, bytes]:
    found = {}
    for name in IDENTITY:
        with open(os.path.join(agent.state_dir, name), "rb") as f:
            found[name] = f.read()
    return found


def check_identity(files: dict[str, bytes], fqdn: str) -> None:
    """Key, certificate and CA parse, and belong together: the certificate carries the key's
    public half and our name, signed by the CA; agent.json is whole JSON."""
    key = serialization.load_pem_private_key(files["identity/key.pem"], password=None)
    cert = x509.load_pem_x509_certificate(files["identity/cert.pem"])
    ca = x509.load_pem_x509_certificate(files["identity/ca.pem"])
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == fqdn
    cert.verify_directly_issued_by(ca)
    assert json.loads(files["agent.json"])["fqdn"] == fqdn


def wait_connected(lan: Lan, agent: AgentProcess) -> None:
    """Until the manager shows the agent connected and its status.json says so too.

    Fill the disk only after both. The manager sees the stream before the agent records it.
    After a refused first attempt (a loaded machine) a "disconnected" status.json exists,
    and a "connected" one replacing it after the disk filled would free its block: the
    later writes would then succeed."""
    wait_until(lambda: (lan.host(agent.host_id) or {}).get("connected"), CONNECT_TIMEOUT,
               "the agent to connect")
    wait_until(agent.connected, CONNECT_TIMEOUT, "status.json to say connected")


def test_register_into_a_full_state_dir_fails_cleanly_and_spends_no_credit(lan, disk, agent):
    disk.fill()
    token = lan.token(credits=1)

    done = agent.register(lan, token)

    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("shepherd-agent: ")
    assert agent.state_dir in done.stderr and NO_SPACE in done.stderr
    assert done.stderr.rstrip().endswith("(the token was not used)")
    assert leftovers(agent) == []  # no key, certificate, agent.json or .tmp- file
    assert credits_left(lan, token) == 1
    assert lan.admin.get("/api/host/")["meta"]["total_count"] == 0

    disk.free()
    done = agent.register(lan, token)  # the same one-credit token

    assert done.returncode == 0, done.stderr
    assert credits_left(lan, token) == 0
    assert leftovers(agent) == sorted(IDENTITY)
    check_identity(identity_bytes(agent), agent.fqdn)


def test_registered_agent_on_a_disk_that_fills_up_keeps_working(lan, disk, agent):
    assert agent.register(lan, lan.token()).returncode == 0
    agent.start()
    wait_connected(lan, agent)
    before = identity_bytes(agent)
    disk.fill()

    # The result cannot go to the outbox on disk; it is held in memory, sent, and reaches
    # the manager.
    action_id = lan.submit(agent.host_id, "agent.ping", {"echo": "full"}, timeout=15)
    outcome = lan.wait(action_id, 15)
    assert outcome.ok, outcome.error
    assert outcome.result["echo"] == "full"
    assert re.search(rf"result of {re.escape(action_id)} held in memory only, not on disk: "
                     rf"cannot write {re.escape(agent.state_dir)}/outbox/\S+\.json: {NO_SPACE}",
                     agent.log())

    # Stopping writes status.json ("stopped"); that fails, is logged, and the agent still
    # exits cleanly; the old status.json goes.
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(15) == 0, agent.log()
    assert re.search(rf"cannot record status: cannot write {re.escape(agent.state_dir)}"
                     rf"/status\.json: {NO_SPACE}", agent.log())
    assert "Traceback" not in agent.log()

    # the stale "connected" status is removed rather than left to mislead `status`
    assert not os.path.exists(os.path.join(agent.state_dir, "status.json"))
    assert leftovers(agent) == sorted(IDENTITY)  # no outbox entry, no .tmp-
    after = identity_bytes(agent)
    assert after == before
    check_identity(after, agent.fqdn)


def stale_status_evidence(agent: AgentProcess) -> str:
    """What the agent's state dir and log say, for a status.json that outlived its stream."""
    path = os.path.join(agent.state_dir, "status.json")
    try:
        with open(path) as f:
            status = f.read()
    except FileNotFoundError:
        status = "(gone)"
    free = os.statvfs(agent.state_dir).f_bavail
    return f"status.json: {status}\nfree blocks: {free}\nfiles: {agent.files()}\n{agent.log()}"


SLEEP = 8  # seconds: long enough to outlast the manager's stop and the disk's refill


def test_result_finished_while_disconnected_is_sent_after_reconnecting_not_run_again(
        lan, disk, agent):
    """The outbox exists for this: an action that ends while the stream is down. With no room
    on disk its result is held in memory, re-sent after Welcome, and the manager's
    redelivery of the action is answered with it instead of running the action again."""
    assert agent.register(lan, lan.token()).returncode == 0
    agent.start()
    wait_connected(lan, agent)
    disk.fill()
    action_id = lan.submit(agent.host_id, "agent.sleep", {"seconds": SLEEP}, timeout=60)
    wait_until(lambda: agent.starts(action_id), 10, "the sleep to start")
    ctx = lan.manager.manager.ctx
    ports = {"port": lan.manager.manager.port, "agent_port": ctx.agent_port,
             "registration_port": ctx.registration_port}
    lan.stop()
    # the agent's "disconnected" status cannot be written, so it removes the stale one,
    # which frees a block: fill it again before the sleep ends
    wait_until(lambda: not os.path.exists(os.path.join(agent.state_dir, "status.json")), 10,
               "the stale status to go", evidence=lambda: stale_status_evidence(agent))
    disk.fill()
    wait_until(lambda: f"action {action_id} succeeded" in agent.log(), 2 * SLEEP,
               "the sleep to end while the manager is down")
    log = agent.log()
    assert log.index(": lost ") < log.index(f"action {action_id} succeeded"), log
    assert f"result of {action_id} held in memory only, not on disk: " in log
    lan.start(**ports)

    outcome = lan.wait(action_id, 40)
    assert outcome.ok and outcome.result == {"slept": SLEEP}, outcome.error
    assert agent.starts(action_id) == 1, agent.log()
    assert not [f for f in leftovers(agent) if f.startswith("outbox/") or ".tmp-" in f]
