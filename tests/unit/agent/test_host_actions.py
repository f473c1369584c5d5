"""host.validate on this very machine (real PATH, /dev, /sys/module, adjtimex), with a
stand-in modinfo, and on a simulated machine."""

import asyncio
import ctypes
import json
import os
import platform
import time

import pytest

from agent import inventory
from agent.actions import ActionContext, Registry, default_registry, host
from agent.inventory import LocalMachine
from agent.simulator.machine import SimulatedMachine
from tests.unit.agent.factories import make_request

MISSING = "shepherd-no-such-thing"


def validate(machine, args, deadline_in=None, progress=None):
    request = make_request(name="host.validate", args=args, deadline_in=deadline_in)
    deadline = request.deadline_ms / 1000 if request.deadline_ms else None
    ctx = ActionContext(request.action_id, deadline, machine,
                        progress if progress is not None else (lambda line: None))
    return asyncio.run(Registry.from_modules([host]).execute(request, ctx))


def checks_of(result):
    assert result.success, result.error
    return json.loads(result.result_json)["checks"]


def fake_modinfo(tmp_path, script):
    """An executable that stands in for modinfo; it is called as ``modinfo -n -- NAME``."""
    path = tmp_path / "modinfo"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_real_agent_offers_it():
    assert "host.validate" in default_registry().names()


def test_everything_present_on_this_machine():
    before = time.time()
    result = validate(LocalMachine("node1"), {"commands": ["sh"], "devices": ["/dev/null"]})
    output = json.loads(result.result_json)
    assert output["checks"] == [
        {"kind": "command", "name": "sh", "ok": True, "detail": "found on PATH"},
        {"kind": "device", "name": "/dev/null", "ok": True, "detail": "present"}]
    assert before <= output["time"] <= time.time()
    assert output["ntp_synchronized"] in (True, False, None)


def test_no_arguments_means_nothing_to_check():
    assert checks_of(validate(LocalMachine("node1"), {})) == []


def test_every_failure_is_named_in_one_line(tmp_path):
    machine = LocalMachine("node1", sys_module=str(tmp_path), modinfo=str(tmp_path / "none"))
    result = validate(machine, {"commands": ["sh", MISSING], "kernel_modules": [MISSING],
                                "devices": ["/dev/null", "/dev/does-not-exist"]})
    assert not result.success
    assert result.error == (f"missing: command {MISSING}, kernel module {MISSING}, "
                            "device /dev/does-not-exist")


def test_a_kernel_module_that_does_not_exist_is_absent():
    state = asyncio.run(LocalMachine("node1").kernel_module_state("shepherd_no_such_mod", 10))
    assert state == "absent"


def test_a_loaded_kernel_module_is_found_in_sys_module(tmp_path):
    (tmp_path / "ko2iblnd").mkdir()
    (tmp_path / "lnet_selftest").mkdir()
    machine = LocalMachine("node1", sys_module=str(tmp_path), modinfo=str(tmp_path / "none"))
    assert checks_of(validate(machine, {"kernel_modules": ["ko2iblnd", "lnet-selftest"]})) == [
        {"kind": "kernel_module", "name": "ko2iblnd", "ok": True, "detail": "loaded"},
        {"kind": "kernel_module", "name": "lnet-selftest", "ok": True, "detail": "loaded"}]


def test_a_module_loaded_on_this_machine_is_loaded():
    loaded = sorted(os.listdir("/sys/module")) if os.path.isdir("/sys/module") else []
    if not loaded:
        pytest.skip("no /sys/module here")
    assert asyncio.run(LocalMachine("node1").kernel_module_state(loaded[0], 10)) == "loaded"


def test_an_available_module_is_what_modinfo_finds(tmp_path):
    machine = LocalMachine("node1", sys_module=str(tmp_path),
                           modinfo=fake_modinfo(tmp_path, '[ "$1 $2 $3" = "-n -- lustre" ]'))
    result = validate(machine, {"kernel_modules": ["lustre", "zfs"]})
    assert result.error == "missing: kernel module zfs"
    assert asyncio.run(machine.kernel_module_state("lustre", 10)) == "available"
    assert checks_of(validate(machine, {"kernel_modules": ["lustre"]})) == [
        {"kind": "kernel_module", "name": "lustre", "ok": True,
         "detail": "available, not loaded"}]


def test_a_slow_modinfo_is_bounded_by_the_deadline_and_killed(tmp_path):
    pid_file = tmp_path / "pid"
    machine = LocalMachine("node1", sys_module=str(tmp_path),
                           modinfo=fake_modinfo(tmp_path, f"echo $$ > {pid_file}; exec sleep 30"))
    start = time.monotonic()
    result = validate(machine, {"kernel_modules": ["lustre"]}, deadline_in=0.5)
    assert time.monotonic() - start < 5
    assert result.error == "timed out checking kernel module lustre"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_progress_after_each_kind_of_check(tmp_path):
    lines = []
    machine = SimulatedMachine("sim00001.sim", 1)
    validate(machine, {"commands": ["sh", "lctl"], "kernel_modules": ["lnet"],
                       "devices": ["/dev/sda", "/dev/sdb"]}, progress=lines.append)
    assert lines == ["checked 2 of 5", "checked 3 of 5", "checked 5 of 5"]
    lines.clear()
    validate(machine, {"devices": ["/dev/sda"]}, progress=lines.append)
    assert lines == ["checked 1 of 1"]


@pytest.mark.parametrize(("args", "where"), [
    ({"devices": ["/dev/../etc/shadow"]}, "devices/0"),
    ({"devices": ["/dev/disk/../../etc"]}, "devices/0"),
    ({"devices": ["/etc/passwd"]}, "devices/0"),
    ({"devices": ["dev/null"]}, "devices/0"),
    ({"devices": ["/dev/null\n"]}, "devices/0"),
    ({"commands": ["sh", "../bin/sh"]}, "commands/1"),
    ({"commands": ["/bin/sh"]}, "commands/0"),
    ({"commands": ["sh; reboot"]}, "commands/0"),
    ({"commands": [""]}, "commands/0"),
    ({"commands": ["x" * 65]}, "commands/0"),
    ({"commands": ["sh\n"]}, "commands/0"),
    ({"commands": "sh"}, "commands"),
    ({"commands": ["sh"] * 101}, "commands"),
    ({"kernel_modules": ["lustre lnet"]}, "kernel_modules/0"),
    ({"kernel_modules": [7]}, "kernel_modules/0"),
    ({"packages": ["lustre"]}, "arguments"),
])
def test_bad_arguments_are_refused_before_any_check(args, where):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"a refused request touched the machine ({name})")

    result = validate(Untouchable(), args)
    assert not result.success
    assert result.error.startswith(f"invalid arguments for host.validate: {where}: ")


def test_the_longest_names_and_lists_allowed_are_accepted():
    args = {"commands": ["a" * 64] * 100, "kernel_modules": ["m.o_d-u+le"],
            "devices": ["/dev/disk/by-id/nvme-Model_1.0-part1", "/dev/" + "d" * 200]}
    assert len(checks_of(validate(SimulatedMachine("sim00001.sim", 1), args))) == 103


def test_a_simulated_machine_has_everything_by_default():
    machine = SimulatedMachine("sim00001.sim", 1, clock_offset=-120.0)
    output = json.loads(validate(machine, {"commands": ["mkfs.lustre"],
                                           "kernel_modules": ["lustre"],
                                           "devices": ["/dev/sdz"]}).result_json)
    assert [c["ok"] for c in output["checks"]] == [True, True, True]
    assert output["ntp_synchronized"] is True
    assert abs(output["time"] - (time.time() - 120)) < 5


def test_a_simulated_machine_lacks_what_is_missing():
    machine = SimulatedMachine("sim00001.sim", 1,
                               missing=frozenset({"mkfs.lustre", "lustre", "/dev/sdz"}))
    result = validate(machine, {"commands": ["sh", "mkfs.lustre"],
                                "kernel_modules": ["lnet", "lustre"],
                                "devices": ["/dev/sda", "/dev/sdz"]})
    assert result.error == "missing: command mkfs.lustre, kernel module lustre, device /dev/sdz"


def test_ntp_synchronized_on_this_machine_is_a_bool_or_none():
    assert LocalMachine("node1").ntp_synchronized() in (True, False, None)


@pytest.mark.parametrize(("returncode", "status", "synchronized"), [
    (0, 0, True),                       # TIME_OK
    (1, 0x2001, True),                  # TIME_INS, PLL and nano bits set
    (0, inventory.STA_UNSYNC, False),
    (0, 0x2000 | inventory.STA_UNSYNC, False),
    (inventory.TIME_ERROR, 0, False),
    (-1, 0, None),
])
def test_adjtimex_answers_are_decoded(returncode, status, synchronized):
    assert inventory.clock_synchronized(returncode, status) is synchronized


@pytest.mark.skipif(platform.machine() != "x86_64", reason="layout checked for x86_64 only")
def test_timex_has_the_kernel_layout():
    assert ctypes.sizeof(inventory._Timex) == 208
    assert inventory._Timex.status.offset == 40
    assert inventory._Timex.tai.offset == 160
