"""Power jobs through the engine (hosts' and nodes' ``available_jobs``, a job's steps and its
refusals) and what the outlet sweep records (``has_power``, device alerts). Actions are not
run here (no BMC agent connects): tests/integration/test_power_end_to_end.py runs them."""

from manager.db.engine import Step
from manager.db.hosts import Action, Alert
from manager.db.inventory import PowerControlDeviceOutlet
from manager.domain.inventory import power_jobs
from tests.api.engine_helpers import wait_until
from tests.api.test_power_control import DEVICES, OUTLETS, SECRET, make_device, types  # noqa: F401
from tests.api.test_registration import error, onboard, wait_for_command

POWER_JOBS = ["PoweronHostJob", "PoweroffHostJob", "PowercycleHostJob"]


def power_jobs_of(host):
    return [j["class_name"] for j in host["available_jobs"] if j["class_name"] in POWER_JOBS]


def registered(manager, admin, fqdn, profile="compute_node"):
    """A registered host whose set-up (it holds the host's write lock) is cancelled: no agent
    connects in these tests."""
    host_id = onboard(manager, admin, fqdn, profile).host_id
    for command in admin.get("/api/command/", limit=0)["objects"]:
        if not command["complete"]:
            admin.patch(command["resource_uri"], {"cancelled": True})
    return host_id


def jobs_body(class_name, **args):
    return {"message": "power", "jobs": [{"class_name": class_name, "args": args}]}


def test_hosts_with_an_outlet_offer_power_jobs(admin, accounts_reset, types):  # noqa: F811
    with_outlet = registered(accounts_reset, admin, "pw1.example")
    without = registered(accounts_reset, admin, "pw2.example")
    device = make_device(admin, types)
    admin.post(OUTLETS, {"device": device["resource_uri"], "identifier": "1",
                         "host": f"/api/host/{with_outlet}/"})
    hosts = {h["id"]: h for h in admin.get("/api/host/", limit=0)["objects"]}
    assert power_jobs_of(hosts[with_outlet]) == POWER_JOBS
    assert power_jobs_of(hosts[without]) == []
    offered = {j["class_name"]: j for j in hosts[with_outlet]["available_jobs"]}
    assert offered["PoweroffHostJob"]["verb"] == "Power Off"
    assert offered["PoweroffHostJob"]["args"] == {"host_id": with_outlet}
    # a job not offered for an object is refused
    err = error(admin.post, "/api/command/", jobs_body("PoweronHostJob", host_id=without))
    assert err.status == 400


def test_a_power_job_without_a_bmc_agent_fails_saying_why(admin, accounts_reset, types):  # noqa: F811
    host_id = registered(accounts_reset, admin, "pw3.example")
    device = make_device(admin, types)
    admin.post(OUTLETS, {"device": device["resource_uri"], "identifier": "1",
                         "host": f"/api/host/{host_id}/"})
    command = admin.post("/api/command/", jobs_body("PoweronHostJob", host_id=host_id))
    done = wait_for_command(admin, command["resource_uri"])
    assert done["errored"] is True
    job, = [admin.get(uri) for uri in done["jobs"]]
    step = admin.get(job["steps"][0])
    assert step["class_name"] == "PowerOnStep" and step["state"] == "failed"
    assert "no BMC agent is registered" in step["log"]


def test_a_power_step_goes_to_the_bmc_agent_and_never_shows_the_password(
        admin, accounts_reset, types):  # noqa: F811
    host_id = registered(accounts_reset, admin, "pw4.example")
    bmc_host = registered(accounts_reset, admin, "bmc1.example", "power_controller")
    device = make_device(admin, types)
    admin.post(OUTLETS, {"device": device["resource_uri"], "identifier": "1",
                         "host": f"/api/host/{host_id}/"})
    command = admin.post("/api/command/", jobs_body("PoweroffHostJob", host_id=host_id))
    job = wait_until(lambda: admin.get(command["jobs"][0]), lambda j: j["steps"])
    step = admin.get(job["steps"][0])
    assert step["class_name"] == "PowerOffStep" and "outlets" not in step["args"]
    assert SECRET not in str(admin.get("/api/step/", limit=0))
    # the action waits for the BMC agent (not connected here), with what it needs
    action = accounts_reset.db(lambda: Action.get(Action.host == bmc_host,
                                                  Action.name == "power.off"))
    assert action.state in ("queued", "sent")
    assert accounts_reset.db(lambda: Step.get(Step.action_id == action.id).host_id) == bmc_host
    admin.patch(command["resource_uri"], {"cancelled": True})


def test_the_sweep_plan_and_what_it_records(admin, accounts_reset, types):  # noqa: F811
    assert accounts_reset.db(power_jobs.sweep_plan) == {}      # no BMC agent: nothing to ask
    bmc_host = registered(accounts_reset, admin, "bmc2.example", "power_controller")
    good = [make_device(admin, types, address=f"10.1.0.{n}", name=f"good{n}") for n in (1, 3)]
    bad = make_device(admin, types, address="10.1.0.2", name="bad")
    outlets = [admin.post(OUTLETS, {"device": d["resource_uri"], "identifier": "1"})["id"]
               for d in [*good, bad]]
    assert accounts_reset.db(power_jobs.sweep_plan) == {bmc_host: outlets}

    entries = [{"id": outlets[0], "ok": True, "power": "on"},
               {"id": outlets[1], "ok": True, "power": "off"},
               {"id": outlets[2], "ok": False, "power": "unknown",
                "error": "no answer from BMC at 10.1.0.2:623 within 10s"}]
    assert accounts_reset.db(lambda: power_jobs.record_sweep(entries)) == {"ok": 2, "failed": 1}
    states = {o["id"]: o["has_power"] for o in admin.get(OUTLETS, limit=0)["objects"]}
    assert [states[i] for i in outlets] == ["On", "Off", "Unknown"]
    assert all(o["power_checked_at"] for o in admin.get(OUTLETS, limit=0)["objects"])

    def active():
        return [(a.alert_item_id, a.message) for a in
                Alert.select().where(Alert.alert_type == power_jobs.UNAVAILABLE,
                                     Alert.active == True)]
    alert, = accounts_reset.db(active)
    assert alert[0] == bad["id"] and "no answer from BMC at 10.1.0.2" in alert[1]
    # raising again keeps one alert; an answer ends it
    accounts_reset.db(lambda: power_jobs.record_sweep(entries))
    assert len(accounts_reset.db(active)) == 1
    accounts_reset.db(lambda: power_jobs.record_sweep(
        [{"id": outlets[2], "ok": True, "power": "on"}]))
    assert accounts_reset.db(active) == []
    assert accounts_reset.db(
        lambda: PowerControlDeviceOutlet.get_by_id(outlets[2]).has_power) == "On"



def test_a_dry_run_names_the_step_that_cannot_run(admin, accounts_reset, types):  # noqa: F811
    host_id = registered(accounts_reset, admin, "pw5.example")
    device = make_device(admin, types)
    admin.post(OUTLETS, {"device": device["resource_uri"], "identifier": "1",
                         "host": f"/api/host/{host_id}/"})
    plan = admin.post("/api/command/", {**jobs_body("PoweronHostJob", host_id=host_id),
                                        "dry_run": True})
    power_step, record_step = plan["jobs"][0]["steps"]
    assert power_step["class_name"] == "PowerOnStep"
    assert "no BMC agent is registered" in power_step["problem"]
    assert "problem" not in record_step
