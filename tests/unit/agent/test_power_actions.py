"""The power actions' contract, on simulated BMCs: arguments, result shape and order,
idempotency, faults, deadlines, concurrency and secrets. The real drivers against real
protocol peers are in tests/integration/test_power_drivers.py."""

import asyncio
import json
import time

import pytest

from agent.actions import ActionContext, Registry, default_registry, power
from agent.simulator.bmc import SimulatedBmcs
from agent.simulator.machine import SimulatedMachine
from tests.unit.agent.factories import make_request

SECRET = "Sup3r-s3cret!"
ACTIONS = ["power.status", "power.on", "power.off", "power.cycle", "power.reset"]


def outlet(n=1, **fields):
    item = {"id": n, "driver": "ipmi", "address": f"10.254.0.{n}", "port": None,
            "username": "admin", "password": SECRET, "identifier": "", "options": "",
            "fence_agent": ""}
    item.update(fields)
    return item


def run(name, args, bmcs=None, deadline_in=None, progress=None):
    """(ActionResult, the machine's BMCs) for one power action on a simulated machine."""
    machine = SimulatedMachine("bmc1.sim", 1, bmcs=bmcs or SimulatedBmcs())
    request = make_request(name=name, args=args, deadline_in=deadline_in)
    deadline = request.deadline_ms / 1000 if request.deadline_ms else None
    ctx = ActionContext(request.action_id, deadline, machine,
                        progress.append if progress is not None else (lambda line: None))
    return asyncio.run(Registry.from_modules([power]).execute(request, ctx)), machine.bmcs


def entries(result):
    assert result.success, result.error
    return json.loads(result.result_json)["outlets"]


def test_a_real_agent_offers_them():
    assert set(ACTIONS) <= set(default_registry().names())


def test_on_then_status_reads_back_what_was_done():
    result, bmcs = run("power.on", {"outlets": [outlet(1), outlet(2)]})
    assert [(e["id"], e["ok"], e["power"], e["error"]) for e in entries(result)] == \
        [(1, True, "on", None), (2, True, "on", None)]
    assert all(isinstance(e["elapsed_ms"], int) for e in entries(result))
    assert bmcs.power("ipmi", "10.254.0.1") == "on"
    status, _ = run("power.status", {"outlets": [outlet(1), outlet(3)]}, bmcs)
    assert [e["power"] for e in entries(status)] == ["on", "off"]


@pytest.mark.parametrize("name, before, after", [
    ("power.off", "on", "off"), ("power.off", "off", "off"), ("power.on", "off", "on"),
    ("power.on", "on", "on"), ("power.cycle", "on", "on"), ("power.cycle", "off", "on"),
    ("power.reset", "on", "on"), ("power.reset", "off", "on"),
])
def test_each_operation_ends_in_its_state_from_either_state(name, before, after):
    result, _ = run(name, {"outlets": [outlet()]}, SimulatedBmcs(initial=before))
    (entry,) = entries(result)
    assert entry["ok"] and entry["power"] == after


def test_results_keep_the_requested_order_with_every_driver():
    items = [outlet(5, driver="redfish", identifier="1"), outlet(2),
             outlet(9, driver="fence", fence_agent="fence_apc_snmp", identifier="3")]
    result, bmcs = run("power.on", {"outlets": items})
    assert [e["id"] for e in entries(result)] == [5, 2, 9]
    assert bmcs.power("fence", "10.254.0.9", identifier="3") == "on"


def test_failures_are_per_outlet_and_name_the_address():
    bmcs = SimulatedBmcs(initial="on")
    bmcs.faults.update({"10.254.0.2": "auth", "10.254.0.3": "unreachable",
                        "10.254.0.4": "lying"})
    result, _ = run("power.off", {"outlets": [outlet(n) for n in (1, 2, 3, 4)],
                                  "timeout": 0.3, "graceful_timeout": 0.1}, bmcs)
    ok, auth, silent, liar = entries(result)
    assert ok["ok"] and ok["power"] == "off" and ok["error"] is None
    assert not auth["ok"] and auth["power"] == "unknown"
    assert auth["error"] == "BMC at 10.254.0.2:623: authentication failed (wrong user name " \
                           "or password)"
    # power.off's time is its timeout plus its graceful wait
    assert silent["error"] == "no answer from BMC at 10.254.0.3:623 within 0.4s"
    assert 400 <= silent["elapsed_ms"] < 1500
    assert liar["error"] == "BMC at 10.254.0.4:623 reports power on after power.off"
    assert liar["power"] == "on"


def test_a_lying_bmc_is_caught_on_power_on_too():
    bmcs = SimulatedBmcs()
    bmcs.faults["10.254.0.1"] = "lying"
    (entry,) = entries(run("power.on", {"outlets": [outlet()], "timeout": 0.3}, bmcs)[0])
    assert entry["error"] == "BMC at 10.254.0.1:623 reports power off after power.on"


@pytest.mark.parametrize("args, where", [
    ({}, "arguments"),
    ({"outlets": [outlet(driver="telnet")]}, "outlets/0/driver"),
    ({"outlets": [outlet(address="10.0.0.1\nx=1")]}, "outlets/0/address"),
    ({"outlets": [outlet(password="a\nb")]}, "outlets/0/password"),
    ({"outlets": [outlet(options="lanplus=1\nipmitool_path=/tmp/x")]}, "outlets/0/options"),
    ({"outlets": [outlet(options="x;reboot")]}, "outlets/0/options"),
    ({"outlets": [{k: v for k, v in outlet(driver="fence").items() if k != "fence_agent"}]},
     "outlets/0"),
    ({"outlets": [outlet(driver="fence", fence_agent="ipmitool")]}, "outlets/0/fence_agent"),
    ({"outlets": [outlet(driver="fence", fence_agent="")]}, "outlets/0/fence_agent"),
    ({"outlets": [outlet(port=70000)]}, "outlets/0/port"),
    ({"outlets": [outlet(extra=1)]}, "outlets/0"),
    ({"outlets": [outlet()] * 1001}, "outlets"),
    ({"outlets": [], "timeout": 0}, "timeout"),
])
def test_a_malformed_request_fails_the_whole_action(args, where):
    result, _ = run("power.on", args)
    assert not result.success
    assert result.error.startswith(f"invalid arguments for power.on: {where}: ")
    assert SECRET not in result.error


@pytest.mark.parametrize("password", ["p4ss\nw0rd", "x" * 300, 12345])
def test_a_refused_password_is_not_quoted(password):
    result, _ = run("power.on", {"outlets": [outlet(password=password)]})
    assert result.error.startswith("invalid arguments for power.on: outlets/0/password: must")
    assert str(password) not in result.error and "p4ss" not in result.error


def test_a_refusal_says_which_rule():
    result, _ = run("power.on", {"outlets": [outlet(port=70000)]})
    assert result.error == "invalid arguments for power.on: outlets/0/port: must be at most 65535"


def test_optional_fields_take_defaults():
    result, _ = run("power.status", {"outlets": [{"id": 7, "driver": "redfish",
                                                  "address": "bmc7.example.com"}]})
    assert entries(result)[0]["ok"]


def test_many_outlets_are_handled_concurrently_with_a_bound():
    bmcs = SimulatedBmcs(latency=0.05)      # 3 exchanges per power.on: 0.15 s an outlet
    items = [outlet(n, address=f"10.254.{n // 250}.{n % 250}") for n in range(200)]
    start = time.monotonic()
    result, _ = run("power.on", {"outlets": items}, bmcs)
    wall = time.monotonic() - start
    assert all(e["ok"] for e in entries(result))
    # Serially 200 × 0.15 s = 30 s; 64 at a time: 4 waves of ~0.15 s.
    assert 0.5 <= wall < 3


def test_a_thousand_simulated_outlets_need_no_sockets_and_little_time():
    items = [outlet(n, address=f"10.254.{n // 250}.{n % 250}") for n in range(1000)]
    start = time.monotonic()
    result, bmcs = run("power.on", {"outlets": items})
    assert sum(e["ok"] for e in entries(result)) == 1000
    assert len(bmcs.states) == 1000
    assert time.monotonic() - start < 3


def test_the_action_deadline_bounds_every_outlet_and_the_result_still_gets_out():
    bmcs = SimulatedBmcs()
    bmcs.faults["10.254.0.2"] = "unreachable"
    start = time.monotonic()
    result, _ = run("power.status", {"outlets": [outlet(1), outlet(2)], "timeout": 30},
                    bmcs, deadline_in=1.0)
    assert time.monotonic() - start < 1.0
    good, silent = entries(result)
    assert good["ok"]
    assert silent["error"] == "no answer from BMC at 10.254.0.2:623 before the action's " \
                              "deadline"


def test_progress_lines_count_outlets_and_never_show_the_password():
    lines = []
    bmcs = SimulatedBmcs()
    bmcs.faults["10.254.0.2"] = "auth"
    result, _ = run("power.on", {"outlets": [outlet(1), outlet(2)]}, bmcs, progress=lines)
    assert lines[-1] == "power.on: 2 of 2 outlets done, 1 failed"
    assert SECRET not in result.result_json and not any(SECRET in line for line in lines)


def test_a_fleet_shares_its_bmcs_so_power_belongs_to_the_node():
    bmcs = SimulatedBmcs()
    run("power.on", {"outlets": [outlet()]}, bmcs)
    result, _ = run("power.status", {"outlets": [outlet()]}, bmcs)
    assert entries(result)[0]["power"] == "on"
    assert SimulatedMachine("lone", 2).power_drivers["ipmi"] is not None
