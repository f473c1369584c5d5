"""``shepherd power status|on|off|cycle`` against the real manager: a PDU with outlets and
nodes wired to them, made through the API. No BMC agent runs: the commands are stored and
their jobs queued, and nothing here waits for a job to succeed."""

import json
import re

import pytest

from api.cli import output, power
from api.client import Client
from tests.conftest import ADMIN_PASSWORD

COMMANDS = "/api/command/"
NODES = [  # xname, hostname, outlet (index, or None), groups, enabled
    ("x3000c0s1b0n0", "nid001", 0, ["rack3", "gpu"], True),
    ("x3000c0s2b0n0", "nid002", 1, ["rack3"], True),
    ("x3000c0s10b0n0", "nid010", 2, ["rack3"], False),
    (None, "uan01", None, ["login"], True),
]


@pytest.fixture
def admin(logged_in) -> Client:
    client = Client(logged_in.url, verify=logged_in.ca_path, retries=1)
    client.login("admin", ADMIN_PASSWORD)
    return client


@pytest.fixture
def cluster(admin, logged_in) -> dict[str, dict]:
    """The nodes of ``NODES`` by hostname; the first two outlets read On and Off, the third
    never read. Outlets and devices go with the next test's reset."""
    pdu_type = admin.get("/api/power_control_type/", name="APC PDU")["objects"][0]
    pdu = admin.post("/api/power_control_device/", {
        "device_type": pdu_type["resource_uri"], "address": "10.0.0.9", "name": "pdu-r3",
        "username": "apc", "password": "Apc-Pa55word!",
        "outlets": [{"identifier": str(n)} for n in (1, 2, 3)]})
    outlets = pdu["outlets"]
    admin.patch("/api/node/", {"objects": [
        {"xname": xname, "hostname": hostname, "groups": groups, "enabled": enabled,
         "outlet": None if outlet is None else outlets[outlet]["resource_uri"]}
        for xname, hostname, outlet, groups, enabled in NODES]})

    def record() -> None:  # as a sweep by a BMC agent would
        from manager.domain.inventory.power import record_power
        record_power({outlets[0]["id"]: "On", outlets[1]["id"]: "Off"})
    logged_in.db(record)
    return {n["hostname"]: n for n in admin.get("/api/node/", limit=0)["objects"]}


@pytest.fixture
def bmc_host(register) -> dict:
    """A registered BMC agent (not running): the manager needs one to plan a power job's
    steps in a dry run."""
    return register("bmc1.example", profile="power_controller")


def commands(admin) -> list[dict]:
    return admin.get(COMMANDS, limit=0, order_by="created_at")["objects"]


def power_commands(admin) -> list[dict]:
    return [c for c in commands(admin) if c["message"].startswith("Power")]


def jobs_of(admin, command: dict) -> list[tuple[str, int]]:
    """(class name, node id) of each job of ``command``."""
    jobs = [admin.get(uri) for uri in command["jobs"]]
    return [(j["class_name"], j["write_locks"][0]["locked_item_id"]) for j in jobs
            if [lock["locked_item_type"] for lock in j["write_locks"]] == ["node"]]


# --- status ---------------------------------------------------------------------------------

def test_status_table(shepherd, cluster):
    result = shepherd("power", "status", "uan01", "--group", "rack3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["XNAME", "HOSTNAME", "POWER", "CHECKED", "DEVICE"]
    rows = [line.split() for line in lines[1:]]
    # xnames in numeric order, the node without one last
    assert [r[:3] for r in rows] == [["x3000c0s1b0n0", "nid001", "On"],
                                     ["x3000c0s2b0n0", "nid002", "Off"],
                                     ["x3000c0s10b0n0", "nid010", "Unknown"],
                                     ["-", "uan01", "-"]]
    assert all(re.fullmatch(r"\d+s", r[3]) and r[4:] == ["ago", "pdu-r3"] for r in rows[:2])
    assert rows[2][3:] == ["never", "pdu-r3"]
    assert rows[3][3:] == ["-", "no", "outlet"]
    wide = shepherd("power", "status", "nid001", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["ID", "ENABLED", "OUTLET", "ADDRESS"]
    assert wide[1].split()[-4:] == [str(cluster["nid001"]["id"]), "yes", "1", "10.0.0.9"]


def test_power_states_are_coloured_on_a_terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    rows = [{"node": {"id": n, "xname": None, "hostname": f"n{n}"},
             "outlet": {"has_power": state, "power_checked_at": None}, "device": None}
            for n, state in enumerate(["On", "Off", None])]
    text = output.table_text(rows, power.COLUMNS)
    assert "\x1b[32mOn" in text and "\x1b[31mOff" in text and "\x1b[33mUnknown" in text


def test_status_json(shepherd, cluster, admin):
    result = shepherd("power", "status", "nid001", "uan01", "--json")
    assert result.exit_code == 0, result.output
    first, no_outlet = json.loads(result.stdout)
    assert first["node"] == cluster["nid001"]
    assert first["outlet"] == admin.get(cluster["nid001"]["outlet"])
    assert (first["outlet"]["has_power"], first["outlet"]["identifier"]) == ("On", "1")
    assert first["outlet"]["power_checked_at"]
    assert first["device"]["name"] == "pdu-r3" and "outlets" not in first["device"]
    assert "password" not in first["device"]
    assert no_outlet == {"node": cluster["uan01"], "outlet": None, "device": None}


def test_status_asks_for_few_things(shepherd, cluster, monkeypatch):
    """Names resolve with filtered lists (all nodes at once when there are many); the
    outlets come in one request, not one per node."""
    asked = []
    get = Client.get

    def counting(self, path, **params):
        asked.append(path)
        return get(self, path, **params)
    monkeypatch.setattr(Client, "get", counting)
    assert shepherd("power", "status", "nid001", "x3000c0s2b0n0", "nid010", "uan01",
                    str(cluster["nid001"]["id"])).exit_code == 0
    assert asked == ["/api/node/", "/api/node/", "/api/power_control_device/"]
    asked.clear()
    monkeypatch.setattr(power, "IN_QUERY_MAX", 2)
    listed = shepherd("power", "status", "nid001", "X03000C0S02B0N00", "nid010", "--json")
    assert asked == ["/api/node/", "/api/power_control_device/"]
    assert [r["node"]["hostname"] for r in json.loads(listed.stdout)] == [
        "nid001", "nid002", "nid010"]


# --- naming nodes -----------------------------------------------------------------------------

def test_unknown_names_and_groups_are_refused_before_anything_is_done(shepherd, cluster, admin):
    before = commands(admin)
    unknown = shepherd("power", "on", "nid001", "x9c9s9b9n9", "nosuch", "--group", "rack3")
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr == ("Error: no node 'x9c9s9b9n9', 'nosuch' (see: shepherd node "
                              "list)\n")
    empty_group = shepherd("power", "off", "--yes", "--group", "rack9", "--group", "rack3")
    assert empty_group.exit_code == 1
    assert empty_group.stderr == "Error: no node in group 'rack9' (see: shepherd node list)\n"
    status = shepherd("power", "status", "999999")
    assert status.exit_code == 1 and "no node '999999'" in status.stderr
    nothing = shepherd("power", "cycle", "--yes")
    assert nothing.exit_code == 2 and "name at least one NODE, or a --group" in nothing.stderr
    assert commands(admin) == before


def test_nodes_without_an_outlet_or_disabled_are_refused(shepherd, cluster, admin):
    before = commands(admin)
    no_outlet = shepherd("power", "on", "nid001", "uan01")
    assert no_outlet.exit_code == 1
    assert no_outlet.stderr.startswith("Error: no power outlet for uan01: nothing was done")
    login = shepherd("power", "on", "--group", "login")
    assert login.exit_code == 1 and "no power outlet for uan01" in login.stderr
    disabled = shepherd("power", "cycle", "nid010", "--yes")
    assert disabled.exit_code == 1
    assert disabled.stderr.startswith("Error: disabled: x3000c0s10b0n0: nothing was done")
    assert commands(admin) == before


# --- on, off, cycle ---------------------------------------------------------------------------

def test_on_dry_run_prints_the_plan_and_changes_nothing(shepherd, cluster, admin, bmc_host):
    before = commands(admin)
    plan = shepherd("power", "on", "nid002", "x3000c0s01b0n0", "--dry-run")
    assert plan.exit_code == 0, plan.output
    assert plan.stderr == "Dry run: nothing was changed.\n"
    lines = plan.stdout.splitlines()
    assert lines[0] == "Power on 2 nodes: 2 jobs"
    assert "Power On node x3000c0s1b0n0" in lines[3] and "Power On node x3000c0s2b0n0" in lines[6]
    assert lines[-1].startswith("Waits behind")
    preview = json.loads(shepherd("power", "on", "nid002", "nid001", "--dry-run",
                                  "--json").stdout)
    assert preview["dry_run"] is True and preview["message"] == "Power on 2 nodes"
    assert [(j["class_name"], j["object"]["id"]) for j in preview["jobs"]] == [
        ("PoweronNodeJob", cluster["nid001"]["id"]), ("PoweronNodeJob", cluster["nid002"]["id"])]
    assert [h["fqdn"] for h in preview["hosts"]] == [bmc_host["fqdn"]]
    assert commands(admin) == before


def test_on_starts_one_command_with_a_job_per_node(shepherd, cluster, admin):
    result = shepherd("power", "on", "x3000c0s2b0n0", "nid001", "nid002")
    assert result.exit_code == 0, result.output
    command, = power_commands(admin)
    assert result.stdout == (f"Started command {command['id']}: Power on 2 nodes "
                             f"(follow it: shepherd command wait {command['id']})\n")
    assert command["message"] == "Power on 2 nodes"
    assert jobs_of(admin, command) == [("PoweronNodeJob", cluster["nid001"]["id"]),
                                       ("PoweronNodeJob", cluster["nid002"]["id"])]
    one = json.loads(shepherd("power", "on", str(cluster["nid002"]["id"]), "--json").stdout)
    assert one["message"] == "Power on x3000c0s2b0n0" and len(one["jobs"]) == 1


def test_off_and_cycle_ask_first(shepherd, cluster, admin):
    refused = shepherd("power", "off", "nid001")  # no input: not confirmed
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Power off x3000c0s1b0n0? They are asked to shut down")
    assert "Aborted!" in refused.stderr
    declined = shepherd("power", "cycle", "--group", "rack3", input="n\n")
    assert declined.exit_code == 1 and "Aborted!" in declined.stderr
    assert declined.stderr.startswith("Leaving out disabled node x3000c0s10b0n0.\n"
                                      "Power cycle x3000c0s1b0n0, x3000c0s2b0n0? They lose power")
    assert power_commands(admin) == []
    confirmed = shepherd("power", "off", "nid001", input="y\n")
    assert confirmed.exit_code == 0, confirmed.output
    command, = power_commands(admin)
    assert jobs_of(admin, command) == [("PoweroffNodeJob", cluster["nid001"]["id"])]


def test_group_selection(shepherd, cluster, admin):
    result = shepherd("power", "cycle", "--group", "rack3", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == "Leaving out disabled node x3000c0s10b0n0.\n"
    started = json.loads(result.stdout)
    assert started["message"] == "Power cycle 2 nodes"
    assert jobs_of(admin, started) == [("PowercycleNodeJob", cluster["nid001"]["id"]),
                                       ("PowercycleNodeJob", cluster["nid002"]["id"])]
    # a node named and in a group counts once
    gpu = json.loads(shepherd("power", "off", "nid001", "--group", "gpu", "--yes",
                              "--json").stdout)
    assert jobs_of(admin, gpu) == [("PoweroffNodeJob", cluster["nid001"]["id"])]


def test_wait_follows_the_command(shepherd, cluster, admin):
    """No BMC agent: the job fails (or still waits at the timeout); either way exit 1."""
    waited = shepherd("power", "on", "nid001", "--wait", "--timeout", "10")
    assert waited.exit_code == 1
    command, = power_commands(admin)
    assert waited.stdout.splitlines()[0] == f"Command {command['id']}: Power on x3000c0s1b0n0"
    job = command["jobs"][0].rstrip("/").rsplit("/", 1)[1]
    assert f"job {job}: Power On node x3000c0s1b0n0: " in waited.stdout
    assert waited.stderr.startswith(f"Error: command {command['id']} ")
    no_timeout_alone = shepherd("power", "on", "nid001", "--timeout", "5")
    assert no_timeout_alone.exit_code == 2


def test_a_refusal_names_the_node_of_each_job():
    nodes = [{"id": 7, "xname": "x1c0s0b0n0"}, {"id": 8, "xname": None, "hostname": "uan01"}]
    exc = power.ShepherdError("jobs: jobs[1]: PoweronNodeJob is not available for node 8", 400)
    assert power._refusal(exc, nodes).message == (
        "jobs: jobs[1] (uan01): PoweronNodeJob is not available for node 8")
    assert (power.canonical_xname("X03000C0S07B0N01"), power.canonical_xname("nid001")) == (
        "x3000c0s7b0n1", None)
