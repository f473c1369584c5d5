"""Host state changes through the engine: offered actions, PUT/DELETE answers, a failed or
refused set-up and its retry, and the audit rows of engine writes (SQLite and PostgreSQL)."""

import asyncio
import json
import re
import time

import pytest

from protos import agent_pb2
from tests.api.engine_helpers import (
    COMMAND_FIELDS,
    alerts_of,
    force_remove,
    onboard_queued,
    set_up_command,
)
from tests.api.test_registration import error, onboard, run, set_up, wait_for_command
from tests.protocol_peer import connected, echo

pytestmark = pytest.mark.usefixtures("finish_leftover_jobs")

# --- host state changes through the engine -------------------------------------------------

@pytest.fixture
def working_host(admin, accounts_reset):
    identity = onboard_queued(accounts_reset, admin, "work.example")
    return set_up(accounts_reset, admin, identity, "working")

def test_host_offers_its_actions(working_host):
    host = working_host
    assert [(t["state"], t["verb"]) for t in host["available_transitions"]] == [("removed", "Remove")]
    force, = host["available_jobs"]
    assert (force["class_name"], force["verb"], force["args"]) == (
        "ForceRemoveHostJob", "Force Remove", {"host_id": host["id"]})
    assert [a.get("state", a.get("class_name")) for a in host["available_actions"]] == [
        "removed", "ForceRemoveHostJob"]
    assert host["locks"] == {"read": [], "write": []}


def test_host_put_unreachable_state(admin, working_host):
    uri = working_host["resource_uri"]
    for state in ("managed", "unconfigured", "no_such_state"):
        err = error(admin.put, uri, {"state": state})
        assert (err.status, err.body) == (
            400, {"state": f"Cannot go from 'working' to '{state}'; available: removed"})
    assert admin.get("/api/command/", limit=0)["meta"]["total_count"] == 1


def test_host_put_dry_run_in_the_query(admin, working_host):
    uri = working_host["resource_uri"]
    response = admin.request("PUT", uri, json_body={"state": "removed"}, params={"dry_run": "1"})
    assert response.status_code == 200
    preview = response.json()
    assert [j["class_name"] for j in preview["jobs"]] == ["RemoveManagedHostJob"]
    assert preview["message"] == "Remove work.example"
    assert preview["transition_job"]["class_name"] == "RemoveManagedHostJob"
    assert admin.get("/api/command/", limit=0)["meta"]["total_count"] == 1
    assert admin.get(uri)["state"] == "working"
    for flag in ("maybe", ""):
        err = error(admin.request, "PUT", uri, json_body={"state": "removed"},
                    params={"dry_run": flag})
        assert (err.status, err.body) == (400, {"dry_run": "Must be 1, true, 0 or false."})
    response = admin.request("PUT", uri, json_body={"state": "removed"}, params={"dry_run": "0"})
    assert response.status_code == 202
    wait_for_command(admin, response.json()["command"]["resource_uri"])


def test_host_delete_answers_with_a_command(admin, working_host):
    uri = working_host["resource_uri"]
    response = admin.request("DELETE", uri)
    assert response.status_code == 202
    command = response.json()["command"]
    assert set(command) == COMMAND_FIELDS
    assert command["resource_uri"] == f"/api/command/{command['id']}/"
    assert command["message"] == "Remove work.example"
    job, = [admin.get(u) for u in command["jobs"]]
    assert job["class_name"] == "RemoveManagedHostJob"
    done = wait_for_command(admin, command["resource_uri"])
    assert (done["errored"], done["cancelled"]) == (False, False)
    assert error(admin.get, uri).status == 404
    assert error(admin.request, "DELETE", uri).status == 404


def failing_validation(request):
    if request.name == "host.validate":
        return agent_pb2.ActionResult(action_id=request.action_id, success=False,
                                      error="required command 'mount' not found")
    return echo(request)


def test_a_failed_step_errors_the_command_and_allows_a_retry(admin, accounts_reset):
    m = accounts_reset
    identity = onboard_queued(m, admin, "bad.example")
    command, (install, setup) = set_up_command(admin)

    async def scenario():
        async with connected(m.agent_address, identity, handler=failing_validation):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                doc = await asyncio.to_thread(admin.get, command["resource_uri"])
                if doc["complete"]:
                    return doc
                await asyncio.sleep(0.05)
        raise AssertionError("the set-up did not end")

    done = run(scenario())
    assert (done["complete"], done["errored"], done["cancelled"]) == (True, True, True)
    install, setup = admin.get(install["resource_uri"]), admin.get(setup["resource_uri"])
    assert (install["state"], install["errored"], install["cancelled"]) == ("complete", True, False)
    assert (setup["state"], setup["errored"], setup["cancelled"]) == ("complete", False, True)
    assert setup["steps"] == []
    step, = (admin.get(u) for u in install["steps"])
    assert (step["class_name"], step["state"], step["result"]) == ("ValidateHostStep", "failed", None)
    assert step["log"] == "required command 'mount' not found"
    assert "ValidateHostStep failed: required command 'mount' not found" in done["logs"]

    alert, = alerts_of(admin, "CommandErroredAlert", command["id"])
    assert (alert["severity"], alert["active"]) == ("ERROR", True)
    assert alert["message"] == "Command failed: Set up host bad.example"
    assert [a["active"] for a in alerts_of(admin, "CommandRunningAlert", command["id"])] == [None]
    assert alerts_of(admin, "CommandCancelledAlert", command["id"]) == []

    host = admin.get(f"/api/host/{identity.host_id}/")
    assert host["state"] == "unconfigured" and host["locks"] == {"read": [], "write": []}
    offered = {t["state"] for t in host["available_transitions"]}
    assert offered == {"packages_installed", "managed", "monitored", "working", "removed"}

    async def retry():  # the agent is back (fixed) before the retry is asked for
        async with connected(m.agent_address, identity):
            command = (await asyncio.to_thread(admin.put, host["resource_uri"],
                                               {"state": "packages_installed"}))["command"]
            return await asyncio.to_thread(wait_for_command, admin, command["resource_uri"], 10)

    retried = run(retry())
    assert retried["message"] == "Continue Server Configuration bad.example"
    assert (retried["errored"], retried["cancelled"]) == (False, False)
    assert admin.get(host["resource_uri"])["state"] == "packages_installed"


def clock_an_hour_slow(request):
    if request.name == "host.validate":
        return agent_pb2.ActionResult(action_id=request.action_id, success=True, result_json=json.dumps(
            {"checks": [], "time": time.time() - 3600, "ntp_synchronized": False}))
    return echo(request)


def test_a_host_whose_clock_is_wrong_is_not_set_up(admin, accounts_reset):
    m = accounts_reset
    identity = onboard_queued(m, admin, "slow-clock.example")
    command, (install, _) = set_up_command(admin)

    async def scenario():
        async with connected(m.agent_address, identity, handler=clock_an_hour_slow):
            return await asyncio.to_thread(wait_for_command, admin, command["resource_uri"], 15)

    done = run(scenario())
    assert (done["errored"], done["cancelled"]) == (True, True)
    validate, clock = (admin.get(u) for u in admin.get(install["resource_uri"])["steps"])
    assert (validate["state"], clock["class_name"], clock["state"]) == (
        "success", "CheckClockStep", "failed")
    assert re.fullmatch(r"the host's clock is at least 359\d\.\d s behind the manager's; "
                        r"synchronise it \(chrony/NTP\) and set the host up again", clock["log"])
    assert admin.get(f"/api/host/{identity.host_id}/")["state"] == "unconfigured"


# --- audit -------------------------------------------------------------------------------

def audit_rows(admin, **filters):
    return admin.get("/api/audit_log/", limit=0, order_by="id", **filters)["objects"]


def test_engine_writes_are_audited_with_their_command(admin, working_host):
    host_id = working_host["id"]
    err = error(admin.put, working_host["resource_uri"], {"state": "managed"})
    assert err.status == 400
    command = admin.put(working_host["resource_uri"], {"state": "removed"})["command"]
    rows = audit_rows(admin, object_type="host", kind="request")
    assert [(r["method"], r["status"], r["outcome"], r["object_id"], r["command_id"])
            for r in rows] == [("PUT", 400, "refused", str(host_id), None),
                               ("PUT", 202, "ok", str(host_id), command["id"])]
    assert json.loads(rows[1]["summary"]) == {"state": "removed"}
    assert rows[1]["username"] == "admin" and rows[1]["path"] == working_host["resource_uri"]

    wait_for_command(admin, command["resource_uri"])


def test_posted_commands_and_deletes_are_audited(admin, accounts_reset):
    first = onboard(accounts_reset, admin, "audit1.example").host_id
    second = onboard(accounts_reset, admin, "audit2.example").host_id
    posted = admin.post("/api/command/", force_remove(first))
    deleted = admin.delete(f"/api/host/{second}/")["command"]
    rows = audit_rows(admin, kind="request", object_type__in=["command", "host"])
    assert [(r["object_type"], r["object_id"], r["method"], r["status"], r["command_id"])
            for r in rows] == [
        ("command", str(posted["id"]), "POST", 201, posted["id"]),
        ("host", str(second), "DELETE", 202, deleted["id"])]
