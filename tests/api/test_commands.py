"""The engine's commands through REST: /api/command/ (iml-api.md) listed, filtered, posted
(dry run, refusals, a job run), cancelled, dismissed and refused to non-administrators."""

import datetime
import json

import pytest

from api.client import ShepherdError
from manager.db.engine import Command
from manager.db.hosts import Action
from tests.api.engine_helpers import (
    COMMAND_FIELDS,
    alerts_of,
    force_remove,
    ids,
    removed_host,
    set_up_command,
    wait_until,
)
from tests.api.test_registration import error, onboard, wait_for_command

pytestmark = pytest.mark.usefixtures("finish_leftover_jobs")


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
