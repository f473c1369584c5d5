"""What the engine's REST tests share: the fields of /api/command/, /api/job/ and /api/step/
(iml-api.md) and hosts whose set-up stays queued. Their fixtures (``finish_leftover_jobs``,
``host_id``) are in this package's conftest."""

import time

from manager.db.hosts import Host
from tests.api.test_registration import onboard

COMMAND_FIELDS = {"cancelled", "complete", "created_at", "dismissed", "errored", "id", "jobs",
                  "logs", "message", "resource_uri"}
JOB_FIELDS = {"available_transitions", "cancelled", "class_name", "commands", "created_at",
              "description", "errored", "id", "modified_at", "read_locks", "resource_uri",
              "state", "step_results", "steps", "wait_for", "write_locks"}
STEP_FIELDS = {"args", "backtrace", "class_name", "console", "created_at", "description", "id",
               "job", "log", "modified_at", "resource_uri", "result", "state", "step_count",
               "step_index"}
CANCEL = [{"state": "cancelled", "label": "Cancel", "verb": "Cancel"}]


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


def removed_host(manager):
    def create():
        existing = Host.get(Host.fqdn == "cmd.example")
        return Host.create(fqdn="gone.example", nodename="gone", state="removed",
                           server_profile=existing.server_profile, roles=",compute,").id
    return manager.db(create)
