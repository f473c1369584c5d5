"""The fence driver with a stand-in fence agent (a real executable on PATH that records how
it was started): options on stdin, nothing secret on the command line, exit codes, console
entries, options refused, and a hung agent killed with its children at the deadline."""

import asyncio
import json
import os
import sys
import time

import pytest

from agent.power import Limits, Outlet
from agent.power.control import perform
from agent.power.fence import FenceDriver, stdin_lines

SECRET = "fence-s3cret"

# Records argv and stdin, then answers like a fence agent from a state file next to it.
AGENT = """#!{python}
import json, os, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
stdin = sys.stdin.read()
options = dict(line.split("=", 1) for line in stdin.splitlines() if "=" in line)
with open(os.path.join(here, "calls.jsonl"), "a") as f:
    f.write(json.dumps({{"argv": sys.argv, "stdin": stdin}}) + "\\n")
state_file = os.path.join(here, "state")
state = open(state_file).read() if os.path.exists(state_file) else "off"
if state == "hang":
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", here])
    time.sleep(60)
action = options["action"]
if action == "status":
    print("Status: " + state.upper())
    sys.exit(0 if state == "on" else 2)
if state == "broken":
    sys.stderr.write("2026-01-01 00:00:00,000 ERROR: Failed: Unable to connect to "
                     + options.get("password", "") + "\\n")
    sys.exit(1)
open(state_file, "w").write({{"on": "on", "off": "off", "reboot": "on"}}[action])
print("Success: done")
"""


@pytest.fixture
def agent_dir(tmp_path, monkeypatch):
    path = tmp_path / "fence_recorder"
    path.write_text(AGENT.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def outlet(**fields):
    values = {"id": 3, "driver": "fence", "address": "10.0.0.3", "port": 623,
              "username": "admin", "password": SECRET, "identifier": "",
              "options": "lanplus=1 --cipher=3", "fence_agent": "fence_recorder"}
    values.update(fields)
    return Outlet(**values)


def perform_one(operation, item, timeout=10.0, console=None):
    limits = Limits(time.monotonic() + timeout, timeout,
                    console=console.append if console is not None else (lambda line: None))
    return asyncio.run(perform(operation, FenceDriver(), item, limits))


def calls(agent_dir):
    with open(agent_dir / "calls.jsonl") as f:
        return [json.loads(line) for line in f]


def test_options_go_on_stdin_and_the_command_line_is_bare(agent_dir):
    console = []
    result = perform_one("power.on", outlet(identifier="7"), console=console)
    assert result["ok"] and result["power"] == "on"
    recorded = calls(agent_dir)
    assert [c["stdin"].splitlines()[-1] for c in recorded] == \
        ["action=status", "action=on", "action=status"]
    for call in recorded:
        assert call["argv"] == [str(agent_dir / "fence_recorder")]
        assert f"password={SECRET}" in call["stdin"].splitlines()
    assert recorded[0]["stdin"].splitlines()[:-1] == [
        "ip=10.0.0.3", "ipport=623", "username=admin", f"password={SECRET}", "plug=7",
        "cipher=3", "lanplus=1"]
    assert console[1].startswith(f"$ {agent_dir}/fence_recorder <<< 'ip=10.0.0.3 ipport=623 "
                                 "username=admin password=******** plug=7")
    assert "→ exit code 0 in" in console[1] and not any(SECRET in c for c in console)


def test_status_exit_codes_map_to_power(agent_dir):
    assert perform_one("power.status", outlet())["power"] == "off"
    (agent_dir / "state").write_text("on")
    assert perform_one("power.status", outlet())["power"] == "on"


def test_off_is_direct_and_reset_is_reboot(agent_dir):
    (agent_dir / "state").write_text("on")
    assert perform_one("power.off", outlet())["power"] == "off"
    (agent_dir / "state").write_text("on")
    assert perform_one("power.reset", outlet())["power"] == "on"
    actions = [c["stdin"].splitlines()[-1] for c in calls(agent_dir)]
    assert actions == ["action=status", "action=off", "action=status",
                       "action=status", "action=reboot", "action=status"]


def test_a_failure_says_what_the_agent_said_with_the_password_masked(agent_dir):
    (agent_dir / "state").write_text("broken")
    console = []
    result = perform_one("power.on", outlet(), console=console)
    assert result["error"] == ("fence_recorder at 10.0.0.3:623: fence_recorder action=on "
                               "failed (exit code 1): Unable to connect to ********")
    assert "stderr: 2026-01-01" in console[-1] and SECRET not in console[-1]


def test_a_hung_agent_is_killed_with_its_children_at_the_deadline(agent_dir):
    (agent_dir / "state").write_text("hang")
    console = []
    start = time.monotonic()
    result = perform_one("power.status", outlet(), timeout=1.0, console=console)
    assert time.monotonic() - start < 3
    assert result["error"] == "no answer from fence_recorder at 10.0.0.3:623 within 1s"
    assert "killed: out of time" in console[-1]
    time.sleep(0.2)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and
                _cmdline(pid).endswith(f"time.sleep(60) {agent_dir}")]


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@pytest.mark.parametrize("options", ["ipmitool_path=/tmp/evil", "password_script=/x",
                                     "ssh_options=-oProxyCommand=x", "action=off",
                                     "--ip=10.9.9.9", "passwd=x", "sudo_path=/x"])
def test_options_that_run_programs_or_override_shepherd_are_refused(agent_dir, options):
    result = perform_one("power.status", outlet(options=options))
    assert "is not allowed here" in result["error"]
    assert not (agent_dir / "calls.jsonl").exists()


def test_a_missing_agent_is_named(agent_dir):
    result = perform_one("power.status", outlet(fence_agent="fence_nowhere"))
    assert result["error"] == ("fence_nowhere at 10.0.0.3:623: fence agent 'fence_nowhere' "
                               "not found on PATH (is fence-agents installed?)")


def test_stdin_lines_leave_out_what_is_not_set():
    assert stdin_lines(outlet(port=None, username="", password="", options="")) == \
        [("ip", "10.0.0.3")]
