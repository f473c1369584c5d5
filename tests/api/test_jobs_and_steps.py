"""The engine's jobs and steps through REST: /api/job/ and /api/step/ (iml-api.md), their
fields, locks, filters and ordering, and job cancellation."""

import json

import pytest

from tests.api.engine_helpers import (
    CANCEL,
    JOB_FIELDS,
    STEP_FIELDS,
    ids,
    onboard_queued,
    set_up_command,
    wait_until,
)
from tests.api.test_registration import error, onboard, set_up, wait_for_command

pytestmark = pytest.mark.usefixtures("finish_leftover_jobs")


def test_job_fields_locks_and_schema(admin, accounts_reset, host_id):
    command, _ = set_up_command(admin)
    install, setup = wait_until(lambda: [admin.get(u) for u in command["jobs"]],
                                lambda js: js[0]["state"] == "tasked")
    for job in (install, setup):
        assert set(job) == JOB_FIELDS
        assert job["resource_uri"] == f"/api/job/{job['id']}/"
        assert job["commands"] == [command["resource_uri"]]
        assert job["available_transitions"] == CANCEL
        assert (job["errored"], job["cancelled"], job["read_locks"]) == (False, False, [])
        lock, = job["write_locks"]
        assert lock["locked_item_id"] == host_id and lock["locked_item_content_type_id"] == 6
        assert lock["locked_item_uri"] == f"/api/host/{host_id}/"
        assert admin.get(job["resource_uri"]) == job
    assert (install["class_name"], install["state"]) == ("InstallHostPackagesJob", "tasked")
    assert (setup["class_name"], setup["state"]) == ("SetupWorkerJob", "pending")
    assert install["description"] == "Validate host cmd.example"
    assert setup["description"] == "Set up worker node cmd.example"
    assert (install["wait_for"], setup["wait_for"]) == ([], [install["resource_uri"]])
    step, = install["steps"]  # waiting for an agent that never connects
    assert install["step_results"] == {step: None} and setup["steps"] == []
    assert admin.get(f"/api/host/{host_id}/")["locks"] == {"read": [],
                                                          "write": [install["id"], setup["id"]]}

    schema = admin.get("/api/job/schema/")
    assert set(schema["fields"]) == JOB_FIELDS
    assert schema["filtering"] == {"id": ["exact", "in"], "state": ["exact", "in"]}
    assert schema["ordering"] == ["created_at"]
    assert schema["allowed_list_http_methods"] == ["get"]
    assert schema["allowed_detail_http_methods"] == ["get", "put"]


def test_job_filters_and_ordering(admin, accounts_reset):
    first = onboard(accounts_reset, admin, "first.example").host_id
    second = onboard(accounts_reset, admin, "second.example").host_id
    everything = admin.get("/api/job/", order_by="created_at")["objects"]
    assert [j["write_locks"][0]["locked_item_id"] for j in everything] == [first, first,
                                                                          second, second]
    assert [j["class_name"] for j in everything] == ["InstallHostPackagesJob", "SetupWorkerJob"] * 2
    a1, a2, b1, b2 = (j["id"] for j in everything)
    assert ids(admin.get("/api/job/", order_by="-created_at")) == [b1, b2, a1, a2]
    wait_until(lambda: admin.get("/api/job/", state="tasked"), lambda r: ids(r) == [a1, b1])
    assert ids(admin.get("/api/job/", state="pending")) == [a2, b2]
    assert ids(admin.get("/api/job/", state__in=["pending", "complete"])) == [a2, b2]
    assert ids(admin.get("/api/job/", state="complete")) == []
    assert ids(admin.get("/api/job/", id=b2)) == [b2]
    assert ids(admin.get("/api/job/", id__in=[b2, a1])) == [a1, b2]
    assert ids(admin.get("/api/job/", state="pending", id__in=[a1, a2])) == [a2]
    for params in ({"class_name": "SetupWorkerJob"}, {"order_by": "state"}, {"id__gt": "1"}):
        assert error(admin.get, "/api/job/", **params).status == 400


def test_cancelling_a_job(admin, accounts_reset, host_id):
    command, (install, setup) = set_up_command(admin)
    assert admin.put(setup["resource_uri"], {"state": "cancelled"}) is None  # 204
    setup = admin.get(setup["resource_uri"])
    assert (setup["state"], setup["cancelled"], setup["errored"]) == ("complete", True, False)
    assert setup["available_transitions"] == []
    assert admin.get(command["resource_uri"])["complete"] is False  # the install still runs
    assert admin.get(f"/api/host/{host_id}/")["locks"]["write"] == [install["id"]]

    err = error(admin.put, setup["resource_uri"], {"state": "cancelled"})
    assert (err.status, err.body) == (
        400, {"state": f"job {setup['id']} is complete and cannot be cancelled"})
    for body in ({"state": "pending"}, {"state": "complete"}, {}):
        err = error(admin.put, install["resource_uri"], body)
        assert (err.status, err.body) == (
            400, {"state": "The only state a job can be set to is 'cancelled'."})
    err = error(admin.put, install["resource_uri"], {"state": "cancelled", "colour": "red"})
    assert (err.status, err.body) == (400, {"colour": "Unknown field."})
    assert error(admin.put, "/api/job/999999/", {"state": "cancelled"}).status == 404

    # IML's client sends the id along (iml-notes §2)
    assert admin.put(install["resource_uri"], {"id": install["id"], "state": "cancelled"}) is None
    done = admin.get(command["resource_uri"])
    assert (done["complete"], done["cancelled"], done["errored"]) == (True, True, False)
    assert admin.get(f"/api/host/{host_id}/")["state"] == "unconfigured"


def test_jobs_are_cancelled_by_administrators_only(admin, make_user, anon, host_id):
    _, (install, _) = set_up_command(admin)
    reader = make_user("reader", "filesystem_users")
    assert reader.get(install["resource_uri"])["id"] == install["id"]
    assert error(reader.put, install["resource_uri"], {"state": "cancelled"}).status == 403
    assert error(anon.put, install["resource_uri"], {"state": "cancelled"}).status == 401
    assert error(anon.get, "/api/job/").status == 401
    assert admin.get(install["resource_uri"])["cancelled"] is False
    assert error(admin.post, "/api/job/", {}).status == 405


# --- /api/step/ and a successful set-up ----------------------------------------------------

def test_steps_of_a_set_up(admin, accounts_reset):
    identity = onboard_queued(accounts_reset, admin, "steps.example")
    command, (install, setup) = set_up_command(admin)
    set_up(accounts_reset, admin, identity, "working")
    done = wait_for_command(admin, command["resource_uri"])
    assert (done["errored"], done["cancelled"]) == (False, False)
    install, setup = admin.get(install["resource_uri"]), admin.get(setup["resource_uri"])
    assert [(j["state"], j["errored"], j["cancelled"]) for j in (install, setup)] == [
        ("complete", False, False)] * 2
    assert install["write_locks"] and install["available_transitions"] == []

    validate, clock = (admin.get(u) for u in install["steps"])
    report, record = (admin.get(u) for u in setup["steps"])
    for step in (validate, clock, report, record):
        assert set(step) == STEP_FIELDS
        assert step["resource_uri"] == f"/api/step/{step['id']}/"
        assert (step["state"], step["step_count"], step["log"], step["backtrace"]) == (
            "success", 2, "done", "")
    assert [(s["class_name"], s["step_index"], s["job"]) for s in (validate, clock, report, record)] == [
        ("ValidateHostStep", 0, install["resource_uri"]), ("CheckClockStep", 1, install["resource_uri"]),
        ("ReportInventoryStep", 0, setup["resource_uri"]), ("RecordInventoryStep", 1, setup["resource_uri"])]
    assert validate["args"] == {"host_id": identity.host_id, "commands": ["ip", "mount"]}
    assert clock["args"] == {"host_id": identity.host_id}
    checked = json.loads(validate["result"])
    assert checked["checks"] == [] and isinstance(checked["time"], float)
    skew = json.loads(clock["result"])
    assert set(skew) == {"skew_seconds", "ntp_synchronized"} and skew["ntp_synchronized"] is True
    assert -5 <= skew["skew_seconds"] < 10
    assert json.loads(record["result"]) == {"agent_version": "test", "inventory_keys": [
        "architecture", "boot_time", "cpu_count"]}
    assert install["step_results"] == {validate["resource_uri"]: checked,
                                       clock["resource_uri"]: skew}


def test_step_filters_ordering_and_schema(admin, accounts_reset):
    identity = onboard_queued(accounts_reset, admin, "stepq.example")
    command, (install, setup) = set_up_command(admin)
    set_up(accounts_reset, admin, identity, "working")
    wait_for_command(admin, command["resource_uri"])
    names = {s["id"]: s["class_name"] for s in admin.get("/api/step/")["objects"]}
    in_order = ["ValidateHostStep", "CheckClockStep", "ReportInventoryStep", "RecordInventoryStep"]

    def listed(**params):
        return [names[i] for i in ids(admin.get("/api/step/", **params))]

    assert listed(order_by="created_at") == in_order
    assert listed(order_by="-created_at") == in_order[::-1]
    assert listed(order_by="modified_at") == in_order
    assert listed(order_by="-modified_at") == in_order[::-1]
    assert listed(job=setup["id"]) == ["ReportInventoryStep", "RecordInventoryStep"]
    assert listed(job=install["id"], order_by="-created_at") == ["CheckClockStep",
                                                                 "ValidateHostStep"]
    by_name = {v: k for k, v in names.items()}
    assert listed(id=by_name["CheckClockStep"]) == ["CheckClockStep"]
    assert listed(id__in=[by_name["RecordInventoryStep"], by_name["ValidateHostStep"]]) == [
        "ValidateHostStep", "RecordInventoryStep"]
    assert listed(job=999999) == []
    for params in ({"state": "success"}, {"job__in": install["id"]}, {"order_by": "step_index"}):
        assert error(admin.get, "/api/step/", **params).status == 400

    schema = admin.get("/api/step/schema/")
    assert set(schema["fields"]) == STEP_FIELDS
    assert schema["filtering"] == {"id": ["exact", "in"], "job": ["exact"]}
    assert schema["ordering"] == ["created_at", "modified_at"]
    assert schema["allowed_list_http_methods"] == ["get"]
    assert schema["allowed_detail_http_methods"] == ["get"]
    step_uri = admin.get(setup["resource_uri"])["steps"][0]
    assert error(admin.put, step_uri, {"state": "failed"}).status == 405
    assert admin.get(step_uri)["state"] == "success"
