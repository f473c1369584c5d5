"""The power actions with the real drivers against real protocol peers on loopback:
virtual IPMI BMCs (pyghmi's BMC server), the sushy-tools Redfish emulator, and Debian's
fence_ipmilan and fence_redfish (tests/power_peers.py says how each peer runs)."""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from agent.actions import ActionContext, default_registry
from agent.power import ipmi
from tests.power_peers import RedfishEmulator, VirtualBmcs, free_port
from tests.unit.agent.factories import FakeMachine, make_request

SECRET = "Bmc-s3cret-4711"

needs_fence_agents = pytest.mark.skipif(
    not (shutil.which("fence_ipmilan") and shutil.which("fence_redfish")),
    reason="Debian fence-agents is not installed (tests/run installs it)")


def act(name, outlets, deadline_in=None, progress=None, **args):
    """Run one power action with the real drivers; its outlet entries."""
    request = make_request(name=name, args={"outlets": outlets, **args},
                           deadline_in=deadline_in)
    deadline = request.deadline_ms / 1000 if request.deadline_ms else None
    ctx = ActionContext(request.action_id, deadline, FakeMachine(),
                        progress.append if progress is not None else (lambda line: None))
    result = asyncio.run(default_registry().execute(request, ctx))
    assert result.success, result.error
    assert SECRET not in result.result_json
    return json.loads(result.result_json)["outlets"]


def ipmi_outlet(port, n=1, **fields):
    item = {"id": n, "driver": "ipmi", "address": "127.0.0.1", "port": port,
            "username": "admin", "password": SECRET}
    item.update(fields)
    return item


@pytest.fixture(scope="module")
def bmcs():
    with VirtualBmcs(count=6, password=SECRET) as peers:
        yield peers


@pytest.fixture
def bmc(bmcs, request):
    """A fresh-looking BMC of the shared set: index, port (off, honest, no delays)."""
    index = _next_bmc.pop(0)
    bmcs.set(index, power="off", lie=False, delay=0, settle_s=0, soft_off_s=0,
             silent_to_strangers=False)
    request.addfinalizer(lambda: _next_bmc.append(index))
    return index, bmcs.ports[index]


_next_bmc = list(range(6))


# --- IPMI: the pyghmi driver against pyghmi's BMC server -------------------------------------

def test_ipmi_every_operation_switches_and_reads_back(bmcs, bmc):
    index, port = bmc
    for name, power in [("power.status", "off"), ("power.on", "on"), ("power.reset", "on"),
                        ("power.cycle", "on"), ("power.off", "off"), ("power.status", "off")]:
        (entry,) = act(name, [ipmi_outlet(port)], timeout=5)
        assert (entry["ok"], entry["power"], entry["error"]) == (True, power, None), name
    assert bmcs.get(index)["controls"] == ["on", "reset", "off", "on", "soft"]


def test_ipmi_off_forces_after_the_graceful_wait(bmcs, bmc):
    index, port = bmc
    bmcs.set(index, power="on", soft_off_s=None)        # the OS ignores ACPI
    (entry,) = act("power.off", [ipmi_outlet(port)], timeout=5, graceful_timeout=0.5)
    assert entry["ok"] and entry["power"] == "off" and entry["elapsed_ms"] >= 500
    assert bmcs.get(index)["controls"] == ["soft", "off"]


def test_ipmi_wrong_password_or_user_is_an_authentication_failure(bmc):
    _, port = bmc
    entries = act("power.status", [ipmi_outlet(port, 1, password="not-it"),
                                   ipmi_outlet(port, 2, username="nobody")], timeout=5)
    for entry in entries:
        assert entry["error"] == f"BMC at 127.0.0.1:{port}: authentication failed (wrong " \
                                 "user name or password)"
        assert entry["elapsed_ms"] < 2000


def test_ipmi_a_bmc_that_never_answers_the_login_is_given_up_in_time(bmcs, bmc):
    # pyghmi's client retries such a login for ever; the driver must stop it.
    index, port = bmc
    bmcs.set(index, silent_to_strangers=True)
    (entry,) = act("power.status", [ipmi_outlet(port, username="nobody")], timeout=1.5)
    assert entry["error"] == f"no answer from BMC at 127.0.0.1:{port} within 1.5s"
    assert 1500 <= entry["elapsed_ms"] < 2500


def test_ipmi_unreachable_bmc_times_out_within_the_timeout():
    port = free_port(socket.SOCK_DGRAM)
    start = time.monotonic()
    (entry,) = act("power.on", [ipmi_outlet(port)], timeout=1.5)
    assert entry["error"] == f"no answer from BMC at 127.0.0.1:{port} within 1.5s"
    assert time.monotonic() - start < 2.5


def test_ipmi_slow_bmc_times_out_and_the_action_deadline_wins_over_the_timeout():
    with VirtualBmcs(password=SECRET, delay=3.0) as slow:      # its own process: it blocks
        start = time.monotonic()
        (entry,) = act("power.status", [ipmi_outlet(slow.ports[0])], deadline_in=1.5,
                       timeout=30)
        assert time.monotonic() - start < 1.5
    assert entry["error"] == f"no answer from BMC at 127.0.0.1:{slow.ports[0]} before the " \
                             "action's deadline"


def test_ipmi_lying_bmc_is_reported(bmcs, bmc):
    index, port = bmc
    bmcs.set(index, power="on", lie=True)
    (entry,) = act("power.off", [ipmi_outlet(port)], timeout=1.5, graceful_timeout=0.3)
    assert entry == {"id": 1, "ok": False, "power": "on", "elapsed_ms": entry["elapsed_ms"],
                     "error": f"BMC at 127.0.0.1:{port} reports power on after power.off"}
    assert bmcs.get(index)["controls"] == ["soft", "off"]


def test_ipmi_a_session_the_bmc_forgot_is_logged_in_again(bmcs, bmc):
    # A BMC that restarted ignores the old session: the driver drops it after a short wait
    # and logs in again, within the outlet's time.
    index, port = bmc
    bmcs.set(index, power="on")
    assert act("power.status", [ipmi_outlet(port)], timeout=10)[0]["power"] == "on"
    bmcs.set(index, forget_sessions=True, power="off")
    entry, = act("power.status", [ipmi_outlet(port)], timeout=10)
    assert (entry["ok"], entry["power"]) == (True, "off"), entry
    assert ipmi.REUSED_BUDGET * 1000 <= entry["elapsed_ms"] < 8000


def test_ipmi_many_outlets_at_once_take_far_less_than_one_after_the_other():
    count, settle = 60, 0.5             # each switch shows in the state 0.5 s later
    with VirtualBmcs(count=count, password=SECRET, settle_s=settle) as many:
        outlets = [ipmi_outlet(port, n) for n, port in enumerate(many.ports)]
        start = time.monotonic()
        entries = act("power.on", outlets, timeout=10)
        wall = time.monotonic() - start
        assert [e["id"] for e in entries] == list(range(count))
        assert all(e["ok"] and e["power"] == "on" for e in entries), entries
        assert sum(e["elapsed_ms"] for e in entries) / 1000 >= count * settle
        assert wall < count * settle / 6        # serially at least 30 s


def test_ipmitool_agrees_with_the_virtual_bmc(bmcs, bmc):
    # The test BMC is a real IPMI peer, not one shaped for pyghmi's client alone.
    index, port = bmc
    bmcs.set(index, power="on")
    out = subprocess.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p",
                          str(port), "-U", "admin", "-E", "chassis", "power", "status"],
                         env={**os.environ, "IPMI_PASSWORD": SECRET}, capture_output=True,
                         check=False,
                         text=True, timeout=20)
    assert out.stdout.strip() == "Chassis Power is on", out.stderr


def test_a_cancelled_login_stops_pyghmi_from_retrying(bmcs, bmc):
    index, port = bmc
    bmcs.set(index, silent_to_strangers=True)
    act("power.status", [ipmi_outlet(port, username="stranger")], timeout=0.5)
    time.sleep(0.2)
    session = ipmi.ipmi_session.Session
    live = [s for handlers in list(session.bmc_handlers.values()) if isinstance(handlers, dict)
            for s in handlers.values()
            if getattr(s, "userid", None) == b"stranger" and not s.broken]
    assert live == []


# --- Redfish: the sushy driver against the sushy-tools emulator ------------------------------

@pytest.fixture(scope="module")
def redfish(tmp_path_factory):
    with RedfishEmulator(str(tmp_path_factory.mktemp("redfish")), systems=2,
                         password=SECRET) as emulator:
        yield emulator


def redfish_outlet(emulator, n=1, **fields):
    item = {"id": n, "driver": "redfish", "address": emulator.url, "port": None,
            "username": "admin", "password": SECRET, "identifier": emulator.system_ids[0]}
    item.update(fields)
    return item


def test_redfish_every_operation_switches_and_reads_back(redfish):
    by_uri = redfish_outlet(redfish, 2, identifier=f"/redfish/v1/Systems/"
                                                   f"{redfish.system_ids[1]}")
    for name, power in [("power.status", "off"), ("power.on", "on"), ("power.reset", "on"),
                        ("power.cycle", "on"), ("power.off", "off")]:
        entries = act(name, [redfish_outlet(redfish), by_uri], timeout=5, graceful_timeout=5)
        assert [(e["ok"], e["power"]) for e in entries] == [(True, power)] * 2, entries
        assert redfish.power(0) == redfish.power(1) == power.capitalize()


def test_redfish_wrong_password_and_unknown_system(redfish):
    wrong, unknown = act("power.status", [
        redfish_outlet(redfish, 1, password="not-it"),
        redfish_outlet(redfish, 2, identifier="no-such-system")], timeout=5)
    assert wrong["error"] == f"BMC at {redfish.url}: authentication failed (wrong user name " \
                             "or password)"
    assert unknown["error"] == f"BMC at {redfish.url}: no such system (check the outlet's " \
                               "identifier)"


def test_redfish_nothing_listening():
    port = free_port()
    (entry,) = act("power.status", [{"id": 1, "driver": "redfish", "address": "127.0.0.1",
                                     "port": port, "username": "a", "password": SECRET}],
                   timeout=2)
    assert entry["error"] == f"BMC at 127.0.0.1:{port}: connection refused"


# --- fence agents: Debian's fence_ipmilan and fence_redfish -----------------------------------

@pytest.fixture
def recorded_fence_ipmilan(tmp_path, monkeypatch):
    """``fence_recorded`` on PATH: writes its argv and /proc cmdline, then becomes the real
    fence_ipmilan (same process, same stdin)."""
    wrapper = tmp_path / "fence_recorded"
    wrapper.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(tmp_path / "argv.jsonl")!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv,
                        "cmdline": open("/proc/self/cmdline").read()}}) + "\\n")
os.execv({shutil.which("fence_ipmilan")!r}, [{shutil.which("fence_ipmilan")!r}])
""")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "argv.jsonl"


class CommandLineWatch:
    """Reads every fence agent's /proc/PID/cmdline while it runs; collects them all."""

    def __init__(self):
        self.seen, self._stop = set(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "fence_" in cmdline:
                    self.seen.add(cmdline.strip())
            time.sleep(0.01)


@needs_fence_agents
def test_fence_ipmilan_against_the_virtual_bmc_with_the_password_on_stdin_only(
        bmcs, bmc, recorded_fence_ipmilan):
    index, port = bmc
    outlet = {"id": 8, "driver": "fence", "address": "127.0.0.1", "port": port,
              "username": "admin", "password": SECRET, "fence_agent": "fence_recorded",
              "options": "lanplus=1"}
    console = []
    with CommandLineWatch() as watch:
        (status,) = act("power.status", [outlet], timeout=20, progress=console)
        (on,) = act("power.on", [outlet], timeout=20, progress=console)
    assert (status["ok"], status["power"]) == (True, "off")
    assert (on["ok"], on["power"]) == (True, "on") and bmcs.get(index)["power"] == "on"
    with open(recorded_fence_ipmilan) as f:
        starts = [json.loads(line) for line in f]
    assert len(starts) == 4                     # status; status, on, status read back
    for start in starts:
        assert start["argv"] == [str(recorded_fence_ipmilan.parent / "fence_recorded")]
        assert SECRET not in start["cmdline"]
    assert watch.seen and not any(SECRET in cmdline for cmdline in watch.seen)
    assert any("password=********" in line for line in console)
    assert not any(SECRET in line for line in console)


@needs_fence_agents
def test_fence_ipmilan_wrong_password_fails_with_the_agents_reason(bmc):
    _, port = bmc
    (entry,) = act("power.status", [{"id": 9, "driver": "fence", "address": "127.0.0.1",
                                     "port": port, "username": "admin", "password": "nope",
                                     "fence_agent": "fence_ipmilan", "options": "lanplus"}],
                   timeout=20)
    assert entry["error"] == (f"fence_ipmilan at 127.0.0.1:{port}: fence_ipmilan "
                              "action=status failed (exit code 1): Unable to obtain correct "
                              "plug status or plug is not available")


@needs_fence_agents
def test_fence_redfish_and_the_redfish_driver_over_https(tmp_path):
    with RedfishEmulator(str(tmp_path / "https"), password=SECRET, tls=True) as emulator:
        uri = f"/redfish/v1/Systems/{emulator.system_ids[0]}"
        fence = {"id": 1, "driver": "fence", "address": "127.0.0.1", "port": emulator.port,
                 "username": "admin", "password": SECRET, "fence_agent": "fence_redfish",
                 "options": f"ssl_insecure=1 systems_uri={uri}"}
        verified = {"id": 2, "driver": "redfish", "address": "127.0.0.1",
                    "port": emulator.port, "username": "admin", "password": SECRET}
        insecure = dict(verified, id=3, options="ssl_insecure=1")
        on, refused, status = act("power.on", [fence, verified, insecure], timeout=20)
        assert (on["ok"], on["power"]) == (True, "on") and emulator.power() == "On"
        assert refused["error"] == (f"BMC at 127.0.0.1:{emulator.port}: TLS handshake failed "
                                    "(set ssl_insecure=1 for a self-signed certificate)")
        assert (status["ok"], status["power"]) == (True, "on")


# --- all three in one action -----------------------------------------------------------------

@needs_fence_agents
def test_one_action_mixes_drivers_and_keeps_their_order(bmc, redfish):
    _, port = bmc
    entries = act("power.status", [
        redfish_outlet(redfish, 30),
        ipmi_outlet(port, 10),
        {"id": 20, "driver": "fence", "address": "127.0.0.1", "port": port,
         "username": "admin", "password": SECRET, "fence_agent": "fence_ipmilan",
         "options": "lanplus=1"},
    ], timeout=20)
    assert [(e["id"], e["ok"]) for e in entries] == [(30, True), (10, True), (20, True)]
