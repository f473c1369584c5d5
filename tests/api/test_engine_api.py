"""The engine's REST face: /api/command/, /api/job/, /api/step/ (iml-api.md), and the host
state changes, removals, failures and audit rows that go through it."""

import datetime
import json
import time

import pytest

from api.client import ShepherdError
from manager.db.engine import Command
from manager.db.hosts import Action, Host
from tests.api.test_registration import error, onboard, set_up, wait_for_command

COMMAND_FIELDS = {"cancelled", "complete", "created_at", "dismissed", "errored", "id", "jobs",
                  "logs", "message", "resource_uri"}
JOB_FIELDS = {"available_transitions", "cancelled", "class_name", "commands", "created_at",
              "description", "errored", "id", "modified_at", "read_locks", "resource_uri",
              "state", "step_results", "steps", "wait_for", "write_locks"}
STEP_FIELDS = {"args", "backtrace", "class_name", "console", "created_at", "description", "id",
               "job", "log", "modified_at", "resource_uri", "result", "state", "step_count",
               "step_index"}
CANCEL = [{"state": "cancelled", "label": "Cancel", "verb": "Cancel"}]


@pytest.fixture(autouse=True)
def finish_leftover_jobs(admin):
    """Cancel what a test left running, so its job tasks end now: the next test empties the
    tables, and SQLite then reuses job ids, so a task still waiting would take over a new
    job of the same id (delaying its first step by up to 2 s, dispatch's polling interval)."""
    yield
    for command in admin.get("/api/command/", complete="false", limit=0)["objects"]:
        admin.patch(command["resource_uri"], {"cancelled": True})


def wait_until(fetch, done, timeout=15):
    """Poll ``fetch()`` until ``done(value)``; the last value, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still not there after {timeout} s: {value}")
        time.sleep(0.05)


def onboard_queued(manager, admin, fqdn):
    """Register a host and wait until its set-up's first action is stored. Connecting only
    then keeps clear of a delivery race (reported): an action committed while the agent's
    stream is opening is not sent until the agent reconnects."""
    identity = onboard(manager, admin, fqdn)
    first_job = admin.get("/api/command/", order_by="-created_at")["objects"][0]["jobs"][0]
    wait_until(lambda: admin.get(first_job), lambda job: job["steps"])
    return identity


def ids(listing):
    return [o["id"] for o in listing["objects"]]


def set_up_command(admin):
    command, = admin.get("/api/command/")["objects"]
    return command, [admin.get(uri) for uri in command["jobs"]]


def force_remove(host_id, **extra):
    return {"message": "Force remove", **extra,
            "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": host_id}}]}


def alerts_of(admin, alert_type, command_id):
    return [a for a in admin.get("/api/alert/", alert_type=alert_type, limit=0)["objects"]
            if a["alert_item"] == f"/api/command/{command_id}/"]


# --- /api/command/ -----------------------------------------------------------------------

def test_command_fields_detail_and_schema(admin, accounts_reset):
    identity = onboard(accounts_reset, admin, "fields.example")
    command, jobs = set_up_command(admin)
    assert set(command) == COMMAND_FIELDS
    assert command["resource_uri"] == f"/api/command/{command['id']}/"
    assert command["message"] == "Set up host fields.example"
    assert (command["complete"], command["errored"], command["cancelled"],
            command["dismissed"], command["logs"]) == (False, False, False, False, "")
    assert [j["class_name"] for j in jobs] == ["InstallHostPackagesJob", "SetupWorkerJob"]
    assert all(j["write_locks"][0]["locked_item_id"] == identity.host_id for j in jobs)
    created = datetime.datetime.fromisoformat(command["created_at"])
    assert abs((datetime.datetime.now(datetime.UTC) - created).total_seconds()) < 30
    assert admin.get(command["resource_uri"]) == command

    schema = admin.get("/api/command/schema/")
    assert set(schema["fields"]) == COMMAND_FIELDS
    assert schema["filtering"] == {"cancelled": ["exact"], "complete": ["exact"],
                                   "created_at": ["gte", "lte", "gt", "lt"],
                                   "dismissed": ["exact"], "errored": ["exact"],
                                   "id": ["exact", "in"]}
    assert schema["ordering"] == ["created_at"]
    assert schema["allowed_list_http_methods"] == ["get", "post"]
    assert schema["allowed_detail_http_methods"] == ["get", "patch"]
    writable = {name for name, f in schema["fields"].items() if not f["readonly"]}
    assert writable == {"cancelled", "dismissed"}


@pytest.fixture
def four_commands(accounts_reset):
    """Commands stored out of date order: ids d < b < a < c, created a < b < c < d."""
    def create():
        made = {}
        for name, day, flags in (("d", 4, {}),
                                 ("b", 2, {"complete": True, "errored": True}),
                                 ("a", 1, {"complete": True}),
                                 ("c", 3, {"complete": True, "cancelled": True,
                                           "dismissed": True})):
            made[name] = Command.create(message=f"command {name}",
                                        created_at=datetime.datetime(2024, 1, day, 12), **flags).id
        return made
    return accounts_reset.db(create)


@pytest.mark.parametrize("params,expected", [
    ({}, "dbac"),
    ({"complete": "true"}, "bac"),
    ({"complete": "false"}, "d"),
    ({"errored": "true"}, "b"),
    ({"errored": "false"}, "dac"),
    ({"cancelled": "true"}, "c"),
    ({"dismissed": "true"}, "c"),
    ({"dismissed": "false"}, "dba"),
    ({"created_at__gte": "2024-01-02T12:00:00+00:00"}, "dbc"),
    ({"created_at__gt": "2024-01-02T12:00:00+00:00"}, "dc"),
    ({"created_at__lte": "2024-01-02T12:00:00+00:00"}, "ba"),
    ({"created_at__lt": "2024-01-02T12:00:00+00:00"}, "a"),
    ({"created_at__gt": "2024-01-02T13:00:00+01:00"}, "dc"),  # the offset is honoured
    ({"order_by": "created_at"}, "abcd"),
    ({"order_by": "-created_at"}, "dcba"),
    ({"complete": "true", "order_by": "-created_at"}, "cba"),
])
def test_command_filters_and_ordering(admin, four_commands, params, expected):
    listing = admin.get("/api/command/", **params)
    assert ids(listing) == [four_commands[n] for n in expected]
    assert listing["meta"]["total_count"] == len(expected)


def test_command_id_filters(admin, four_commands):
    a, b, c = four_commands["a"], four_commands["b"], four_commands["c"]
    assert ids(admin.get("/api/command/", id=b)) == [b]
    assert ids(admin.get("/api/command/", id__in=[c, a])) == [a, c]
    assert ids(admin.get("/api/command/", id=999999)) == []
    assert admin.get(f"/api/command/{a}/")["message"] == "command a"
    assert error(admin.get, "/api/command/999999/").status == 404
    assert error(admin.patch, "/api/command/999999/", {"dismissed": True}).status == 404


@pytest.mark.parametrize("params,param", [
    ({"message": "x"}, "message"),
    ({"created_at": "2024-01-01T00:00:00"}, "created_at"),
    ({"id__gt": "1"}, "id__gt"),
    ({"complete": "perhaps"}, "complete"),
    ({"order_by": "message"}, "order_by"),
])
def test_command_refused_queries(admin, params, param):
    err = error(admin.get, "/api/command/", **params)
    assert err.status == 400 and list(err.body) == [param]


@pytest.fixture
def host_id(admin, accounts_reset):
    """A registered host whose agent never connects: its set-up command stays unfinished,
    its first job tasked with its action queued."""
    return onboard_queued(accounts_reset, admin, "cmd.example").host_id


def removed_host(manager):
    def create():
        existing = Host.get(Host.fqdn == "cmd.example")
        return Host.create(fqdn="gone.example", nodename="gone", state="removed",
                           server_profile=existing.server_profile, roles=",compute,").id
    return manager.db(create)


@pytest.mark.parametrize("body,field,message", [
    ({}, "message", "A message of 1 to 1024 characters is required."),
    ({"message": "  ", "jobs": []}, "message", "A message of 1 to 1024 characters is required."),
    ({"message": "x"}, "jobs", "A list of 1 to 10000 jobs is required."),
    ({"message": "x", "jobs": {"class_name": "ForceRemoveHostJob"}}, "jobs",
     "A list of 1 to 10000 jobs is required."),
    ({"message": "x", "jobs": []}, "jobs", "A list of 1 to 10000 jobs is required."),
    ({"message": "x", "jobs": ["ForceRemoveHostJob"]}, "jobs",
     "jobs[0]: each job is an object with class_name and args"),
    ({"message": "x", "jobs": [{"class_name": "NoSuchJob", "args": {}}]}, "jobs",
     "jobs[0]: unknown job class 'NoSuchJob'"),
    ({"message": "x", "jobs": [{"class_name": "SetupHostJob", "args": {"host_id": "{host}"}}]},
     "jobs", "jobs[0]: SetupHostJob changes state; PUT the object's state instead"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": ["{host}"]}]},
     "jobs", "jobs[0]: args must be an object"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": "1"}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": True}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": [1]}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": 1.0}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": -1}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {}}]},
     "jobs", "jobs[0]: args.host_id must be a positive integer id"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob",
                                "args": {"host_id": 999999}}]},
     "jobs", "jobs[0]: host 999999 does not exist"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob",
                                "args": {"host_id": "{removed}"}}]},
     "jobs", "jobs[0]: ForceRemoveHostJob is not available for host {removed}"),
    ({"message": "x", "jobs": [{"class_name": "ForceRemoveHostJob", "args": {"host_id": "{host}"}},
                               {"class_name": "NoSuchJob"}]},
     "jobs", "jobs[1]: unknown job class 'NoSuchJob'"),
    ({"message": "x", "jobs": [], "colour": "red"}, "colour", "Unknown field."),
    ({**force_remove("{host}"), "dry_run": "yes"}, "dry_run", "Must be true or false."),
])
def test_command_post_refusals(admin, accounts_reset, host_id, body, field, message):
    removed = removed_host(accounts_reset)
    body = json.loads(json.dumps(body).replace('"{host}"', str(host_id))
                      .replace('"{removed}"', str(removed)))
    err = error(admin.post, "/api/command/", body)
    message = message.replace("{removed}", str(removed))
    assert (err.status, err.body) == (400, {field: message})
    # nothing was stored, and nothing queued was preempted
    command, = admin.get("/api/command/")["objects"]
    assert command["message"] == "Set up host cmd.example" and not command["cancelled"]


@pytest.mark.parametrize("odd", ["x", {}, 2**70, 0, -1], ids=["text", "object", "huge", "zero",
                                                         "negative"])
def test_command_post_odd_ids(admin, host_id, odd):
    """Checked before anything touches the database (a huge number is no id, not a 500)."""
    err = error(admin.post, "/api/command/", force_remove(odd))
    assert (err.status, err.body) == (400, {"jobs": "jobs[0]: args.host_id must be a positive "
                                                    "integer id"})


def test_command_post_dry_run_stores_nothing(admin, accounts_reset, host_id):
    before = set_up_command(admin)
    preview = admin.post("/api/command/", force_remove(host_id, dry_run=True))
    assert preview["dry_run"] is True and preview["message"] == "Force remove"
    job, = preview["jobs"]
    assert job["class_name"] == "ForceRemoveHostJob" and job["cancellable"] is False
    assert job["object"] == {"type": "host", "id": host_id, "label": "cmd.example",
                             "content_type_id": 6}
    assert [s["class_name"] for s in job["steps"]] == ["RevokeHostStep"]
    response = admin.request("POST", "/api/command/", json_body=force_remove(host_id),
                             params={"dry_run": "1"})
    assert response.status_code == 200 and response.json()["dry_run"] is True
    # the queued set-up was neither preempted nor joined by another command
    assert set_up_command(admin) == before
    assert admin.get(f"/api/host/{host_id}/")["state"] == "unconfigured"


def test_command_post_runs_the_job(admin, accounts_reset, host_id):
    response = admin.request("POST", "/api/command/", json_body=force_remove(host_id))
    assert response.status_code == 201
    command = response.json()
    assert set(command) == COMMAND_FIELDS and command["message"] == "Force remove"
    assert response.headers["Location"] == command["resource_uri"]
    done = wait_for_command(admin, command["resource_uri"])
    assert (done["errored"], done["cancelled"]) == (False, False)
    job, = [admin.get(uri) for uri in done["jobs"]]
    assert (job["class_name"], job["state"], job["available_transitions"]) == (
        "ForceRemoveHostJob", "complete", [])
    assert job["description"] == "Force remove host cmd.example"
    assert error(admin.get, f"/api/host/{host_id}/").status == 404


def test_cancelling_a_running_set_up_command(admin, accounts_reset, host_id):
    command, _ = set_up_command(admin)
    uri = command["resource_uri"]
    install = wait_until(lambda: admin.get(command["jobs"][0]), lambda j: j["steps"])
    assert install["state"] == "tasked"
    action_id = accounts_reset.db(lambda: Action.get(Action.host == host_id).id)
    assert [a["active"] for a in alerts_of(admin, "CommandRunningAlert", command["id"])] == [True]

    cancelled = admin.patch(uri, {"cancelled": True})
    assert (cancelled["cancelled"], cancelled["complete"], cancelled["errored"]) == (True, True, False)
    assert admin.get(uri) == cancelled
    jobs = [admin.get(u) for u in command["jobs"]]
    assert [(j["state"], j["cancelled"], j["errored"]) for j in jobs] == [
        ("complete", True, False), ("complete", True, False)]
    assert all(j["available_transitions"] == [] and j["write_locks"] for j in jobs)
    assert "cancelled by request" in cancelled["logs"]
    assert install["steps"] and admin.get(install["steps"][0])["state"] == "incomplete"
    # the step's action will never run: it failed on the manager (a connected agent is told)
    assert accounts_reset.db(lambda: Action.get_by_id(action_id).state) == "failed"

    alert, = alerts_of(admin, "CommandCancelledAlert", command["id"])
    assert (alert["severity"], alert["active"]) == ("ERROR", True)
    assert alert["message"] == "Command cancelled: Set up host cmd.example"
    running, = alerts_of(admin, "CommandRunningAlert", command["id"])
    assert running["active"] is None and running["end"] is not None
    assert alerts_of(admin, "CommandSuccessfulAlert", command["id"]) == []

    host = admin.get(f"/api/host/{host_id}/")
    assert host["state"] == "unconfigured" and host["locks"] == {"read": [], "write": []}
    assert "packages_installed" in [t["state"] for t in host["available_transitions"]]
    # cancelling again changes nothing; resuming is refused
    assert admin.patch(uri, {"cancelled": True}) == cancelled
    err = error(admin.patch, uri, {"cancelled": False})
    assert (err.status, err.body) == (400, {"cancelled": "A cancelled command cannot be resumed."})


def test_patching_a_complete_command_changes_nothing(admin, four_commands):
    uri = f"/api/command/{four_commands['a']}/"
    before = admin.get(uri)
    assert admin.patch(uri, {"cancelled": True}) == before
    assert admin.get(uri) == before
    assert ids(admin.get("/api/command/", cancelled="true")) == [four_commands["c"]]


def test_dismissing_a_command(admin, four_commands):
    uri = f"/api/command/{four_commands['a']}/"
    dismissed = admin.patch(uri, {"dismissed": True})
    assert dismissed["dismissed"] is True and dismissed["cancelled"] is False
    assert ids(admin.get("/api/command/", dismissed="true")) == [four_commands["a"],
                                                                   four_commands["c"]]
    # IML's clients PATCH back what they read: read-only fields ride along untouched
    again = admin.patch(uri, {**dismissed, "dismissed": False, "message": "renamed"})
    assert again == {**dismissed, "dismissed": False}


@pytest.mark.parametrize("body,field", [
    ({"dismissed": "yes"}, "dismissed"),
    ({"cancelled": 1}, "cancelled"),
    ({"colour": "red"}, "colour"),
    ({"message": "renamed"}, "message"),
    ({"dismissed": True, "cancelled": "no"}, "cancelled"),  # nothing applied
])
def test_command_patch_refusals(admin, four_commands, body, field):
    uri = f"/api/command/{four_commands['d']}/"
    before = admin.get(uri)
    err = error(admin.patch, uri, body)
    assert err.status == 400 and list(err.body) == [field]
    assert admin.get(uri) == before


def test_command_methods_not_allowed(admin, four_commands):
    uri = f"/api/command/{four_commands['a']}/"
    for method, path in (("DELETE", uri), ("PUT", "/api/command/"), ("DELETE", "/api/command/")):
        with pytest.raises(ShepherdError) as err:
            admin.request(method, path, json_body={})
        assert err.value.status == 405, (method, path)


def test_commands_are_changed_by_administrators_only(make_user, anon, four_commands):
    uri = f"/api/command/{four_commands['d']}/"
    reader = make_user("reader", "filesystem_users")
    assert ids(reader.get("/api/command/", order_by="created_at")) == [
        four_commands[n] for n in "abcd"]
    assert reader.get(uri)["message"] == "command d"
    for client, status in ((reader, 403), (anon, 401)):
        assert error(client.post, "/api/command/", force_remove(1)).status == status
        assert error(client.patch, uri, {"cancelled": True}).status == status
        assert error(client.patch, uri, {"dismissed": True}).status == status
    assert error(anon.get, "/api/command/").status == 401
    assert error(anon.get, uri).status == 401
    fs_admin = make_user("fsadmin", "filesystem_administrators")
    assert fs_admin.patch(uri, {"dismissed": True})["dismissed"] is True
    assert fs_admin.patch(uri, {"cancelled": True})["cancelled"] is True


# --- /api/job/ ---------------------------------------------------------------------------

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
