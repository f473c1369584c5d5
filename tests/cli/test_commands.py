"""The engine from the command line: ``command list|show|wait|run|cancel``, ``job cancel``,
``host set-state`` and ``host remove``, against the real manager and real agents.

A host registered by ``register`` starts unconfigured with a "Set up host" command that
waits for its agent: without ``run_agent`` that command never finishes (timeouts, cancels,
Force Remove); with it the set-up succeeds in about a second (state changes, removal).
"""

import json
import time

import pytest

from api.cli.commands import job_args
from api.client import Client
from tests.conftest import ADMIN_PASSWORD


@pytest.fixture
def admin(logged_in) -> Client:
    client = Client(logged_in.url, verify=logged_in.ca_path, retries=1)
    client.login("admin", ADMIN_PASSWORD)
    return client


def set_up_command(shepherd, fqdn: str) -> dict:
    found = [c for c in json.loads(shepherd("command", "list", "--json").stdout)
             if c["message"] == f"Set up host {fqdn}"]
    assert len(found) == 1, found
    return found[0]


def job_ids(command: dict) -> list[int]:
    return [int(uri.rstrip("/").rsplit("/", 1)[1]) for uri in command["jobs"]]


def host_states(shepherd) -> dict[str, str]:
    return {h["fqdn"]: h["state"] for h in json.loads(shepherd("host", "list", "--json").stdout)}


def test_a_new_hosts_set_up_command_is_listed_and_shown(shepherd, register, admin):
    register("n1.example")
    listed = json.loads(shepherd("command", "list", "--json").stdout)
    assert listed == admin.get("/api/command/", order_by="-created_at")["objects"]
    setup, = listed
    assert setup["message"] == "Set up host n1.example" and setup["complete"] is False
    table = shepherd("command", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "MESSAGE", "STATE", "CREATED"]
    assert table[1].split()[:6] == [str(setup["id"]), "Set", "up", "host", "n1.example", "running"]
    assert json.loads(shepherd("command", "list", "--running", "--json").stdout) == listed
    assert shepherd("command", "list", "--failed", "--json").stdout == "[]\n"
    assert shepherd("command", "list", "--failed").stderr == "No commands.\n"
    shown = shepherd("command", "show", str(setup["id"]), "--json")
    assert json.loads(shown.stdout) == admin.get(setup["resource_uri"])
    first, second = job_ids(setup)
    text = shepherd("command", "show", str(setup["id"])).stdout
    assert "State    running" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.split("\n\n")[1].splitlines()}
    assert rows["JOB"] == ["STEP", "DESCRIPTION", "STATE"]
    assert rows[str(first)][:3] == ["Validate", "host", "n1.example"]
    assert rows[str(second)] == ["Set", "up", "worker", "node", "n1.example", "pending"]
    missing = shepherd("command", "show", "999999")
    assert missing.exit_code == 1 and missing.stderr.startswith("Error: ")


def test_set_state_refuses_a_state_the_host_cannot_reach(shepherd, register):
    register("n1.example")  # its set-up, queued, takes it to "working"
    refused = shepherd("host", "set-state", "n1.example", "managed")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr == ("Error: state: Cannot go from 'unconfigured' (its queued jobs take "
                              "it to 'working', where a new plan starts) to 'managed'; "
                              "available: removed\n")
    bogus = shepherd("host", "set-state", "n1.example", "flying")
    assert bogus.exit_code == 1 and bogus.stderr.startswith("Error: state: Cannot go from ")
    assert len(json.loads(shepherd("command", "list", "--json").stdout)) == 1


def test_dry_run_prints_the_plan_and_changes_nothing(shepherd, register):
    host = register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    plan = shepherd("host", "set-state", "n1.example", "removed", "--dry-run")
    assert plan.exit_code == 0 and plan.stderr == "Dry run: nothing was changed.\n"
    lines = plan.stdout.splitlines()
    assert lines[0] == "Remove n1.example: 1 job"
    assert lines[3].split() == ["1", "Remove", "host", "n1.example", "working", "->", "removed",
                                "job", str(job_ids(setup)[-1])]
    assert lines[-1] == f"Waits behind  command {setup['id']} (Set up host n1.example)"
    preview = json.loads(shepherd("host", "set-state", "n1.example", "removed", "--dry-run",
                                  "--json").stdout)
    assert preview["dry_run"] is True and [j["class_name"] for j in preview["jobs"]] == [
        "RemoveManagedHostJob"]
    assert [c["id"] for c in preview["waits_behind"]] == [setup["id"]]
    forced = json.loads(shepherd("command", "run", "ForceRemoveHostJob", "--args",
                                 f"host_id={host['id']}", "--dry-run", "--json").stdout)
    assert [(j["class_name"], j["object"]["id"]) for j in forced["jobs"]] == [
        ("ForceRemoveHostJob", host["id"])]
    # nothing was planned, cancelled or removed
    assert json.loads(shepherd("command", "list", "--json").stdout) == [setup]
    assert json.loads(shepherd("host", "show", "n1.example", "--json").stdout) == host


def test_wait_on_a_cancelled_command_exits_1_naming_the_job(shepherd, register):
    register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    cancelled = shepherd("command", "cancel", str(setup["id"]))
    assert cancelled.stdout == f"Cancelled command {setup['id']}.\n"
    waited = shepherd("command", "wait", str(setup["id"]))
    assert waited.exit_code == 1
    assert waited.stderr == (f"Error: command {setup['id']} was cancelled: job {job_ids(setup)[0]} "
                             "(Validate host n1.example): cancelled by request\n")
    assert waited.stdout.splitlines()[0] == f"Command {setup['id']}: Set up host n1.example"
    assert f"job {job_ids(setup)[1]}: Set up worker node n1.example: cancelled" in waited.stdout
    again = shepherd("command", "cancel", str(setup["id"]))
    assert again.exit_code == 1 and again.stderr == f"Error: command {setup['id']} already cancelled\n"


def test_wait_times_out_on_a_set_up_whose_agent_never_connects(shepherd, register):
    register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    started = time.monotonic()
    waited = shepherd("command", "wait", str(setup["id"]), "--timeout", "1")
    assert 1 <= time.monotonic() - started < 5
    assert waited.exit_code == 1
    assert waited.stderr == f"Error: command {setup['id']} still running after 1 s\n"
    assert f"job {job_ids(setup)[0]}: Validate host n1.example: " in waited.stdout
    quiet = shepherd("command", "wait", str(setup["id"]), "--timeout", "0.3", "--json")
    assert quiet.exit_code == 1 and json.loads(quiet.stdout)["complete"] is False


def test_job_cancel(shepherd, register):
    register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    first, second = job_ids(setup)
    assert shepherd("job", "cancel", str(first)).stdout == f"Cancelled job {first}.\n"
    again = shepherd("job", "cancel", str(first))
    assert again.exit_code == 1
    assert again.stderr == f"Error: state: job {first} is complete and cannot be cancelled\n"
    # the job after it cannot run from where the host is: the command ends cancelled
    waited = shepherd("command", "wait", str(setup["id"]), "--timeout", "5")
    assert waited.exit_code == 1 and "was cancelled: job" in waited.stderr
    assert f"job {second}: Set up worker node n1.example: cancelled" in waited.stdout
    assert shepherd("job", "cancel", "999999").exit_code == 1


def test_command_run_force_remove_and_wait(shepherd, register):
    host = register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    done = shepherd("command", "run", "ForceRemoveHostJob", "--args", f"host_id={host['id']}",
                    "--wait")
    assert done.exit_code == 0, done.output
    command_id = int(done.stdout.split(":")[0].split()[-1])
    assert done.stdout.splitlines()[0] == (f"Command {command_id}: Run ForceRemoveHostJob "
                                           f"(host_id={host['id']})")
    assert "Revoke the host's certificate and close its stream: succeeded" in done.stdout
    assert done.stdout.splitlines()[-1] == f"Command {command_id} succeeded."
    assert host_states(shepherd) == {}
    setup = json.loads(shepherd("command", "show", str(setup["id"]), "--json").stdout)
    assert setup["cancelled"] is True and "ForceRemoveHostJob took over" in setup["logs"]


def test_removing_a_busy_host_waits_behind_its_set_up_and_force_does_not(shepherd, register):
    register("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    held = shepherd("host", "remove", "n1.example", "--yes", "--timeout", "1")
    assert held.exit_code == 1
    first, second = job_ids(setup)
    assert held.stderr.splitlines()[0] == (f"The removal waits for jobs {first}, {second} holding "
                                           "n1.example (--force removes the host at once).")
    assert held.stderr.splitlines()[-1].endswith(" still running after 1 s")
    forced = shepherd("host", "remove", "n1.example", "--yes", "--force", "--no-wait")
    command_id = int(forced.stdout.split(":")[0].split()[-1])
    assert forced.stdout == (f"Started command {command_id}: Force Remove n1.example "
                             f"(follow it: shepherd command wait {command_id})\n")
    ended = json.loads(shepherd("command", "wait", str(command_id), "--json",
                                "--timeout", "30").stdout)
    assert ended["complete"] is True and ended["errored"] is False
    assert host_states(shepherd) == {}


def test_a_real_agent_sets_the_host_up_then_set_state_removes_it(shepherd, register, run_agent):
    register("n1.example")
    run_agent("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    waited = shepherd("command", "wait", str(setup["id"]), "--timeout", "20")
    assert waited.exit_code == 0, waited.output
    last_job = job_ids(setup)[-1]
    assert (f"job {last_job} step 2/2: Record the inventory and the agent's version: succeeded"
            in waited.stdout)
    assert waited.stdout.splitlines()[-1] == f"Command {setup['id']} succeeded."
    assert host_states(shepherd) == {"n1.example": "working"}
    there = shepherd("host", "set-state", "n1.example", "working")
    assert there.exit_code == 0 and there.stderr == "Host n1.example is already working.\n"
    refused = shepherd("host", "set-state", "n1.example", "managed")
    assert refused.stderr == "Error: state: Cannot go from 'working' to 'managed'; available: removed\n"
    removed = shepherd("host", "set-state", "n1.example", "removed", "--wait", "--timeout", "20")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.splitlines()[-1] == "Host n1.example is removed."
    assert host_states(shepherd) == {}


def test_host_remove_goes_through_the_engine_and_waits(shepherd, register, run_agent):
    register("n1.example")
    run_agent("n1.example")
    setup = set_up_command(shepherd, "n1.example")
    assert shepherd("command", "wait", str(setup["id"]), "--timeout", "20").exit_code == 0
    removed = shepherd("host", "remove", "n1.example", "--yes")
    assert removed.exit_code == 0, removed.output
    lines = removed.stdout.splitlines()
    assert lines[0].endswith(": Remove n1.example") and lines[-1] == "Removed host n1.example."
    assert removed.stderr == ""
    assert host_states(shepherd) == {}


def test_a_failed_set_up_names_the_step_and_its_log(shepherd, register, run_agent, tmp_path):
    register("n1.example")
    run_agent("n1.example", PATH=str(tmp_path))  # no ip, no mount: validation fails
    setup = set_up_command(shepherd, "n1.example")
    waited = shepherd("command", "wait", str(setup["id"]), "--timeout", "20")
    assert waited.exit_code == 1
    assert waited.stderr == (
        f"Error: command {setup['id']} failed: job {job_ids(setup)[0]} (Validate host "
        "n1.example): step 1/2 (Check the machine against its roles' requirements) failed: "
        "missing: command ip, command mount\n")
    failed = json.loads(shepherd("command", "list", "--failed", "--json").stdout)
    assert [c["id"] for c in failed] == [setup["id"]]
    assert "failed" in shepherd("command", "list").stdout.splitlines()[1].split()


def test_wait_redraws_in_place_on_a_terminal(shepherd, register):
    host = register("n1.example")
    done = shepherd("command", "run", "ForceRemoveHostJob", "--args", f"host_id={host['id']}",
                    "--wait", env={"FORCE_COLOR": "1", "COLUMNS": "100"})
    assert done.exit_code == 0, done.output
    assert "\x1b[" in done.stdout and "DESCRIPTION" in done.stdout
    assert done.stdout.rstrip().endswith("succeeded.")


def test_bad_job_arguments(shepherd, logged_in):
    for args in (["--args", "host_id"], ["--args", "=3"], ["--args-json", "[1]"],
                 ["--args-json", "{"], ["--args", "a=1", "--args-json", "{}"],
                 ["--args", "host_id=1", "--timeout", "5"]):
        assert shepherd("command", "run", "ForceRemoveHostJob", *args).exit_code == 2, args
    unknown = shepherd("command", "run", "NoSuchJob", "--args", "host_id=1")
    assert unknown.exit_code == 1
    assert unknown.stderr == "Error: jobs: jobs[0]: unknown job class 'NoSuchJob'\n"
    gone = shepherd("command", "run", "ForceRemoveHostJob", "--args", "host_id=999999")
    assert gone.exit_code == 1 and gone.stderr == "Error: jobs: jobs[0]: host 999999 does not exist\n"


def test_job_arguments_are_json_when_they_parse():
    assert job_args(("host_id=3", "name=node 1", 'quoted="7"', "on=true", "eq=a=b"), None) == {
        "host_id": 3, "name": "node 1", "quoted": "7", "on": True, "eq": "a=b"}
    assert job_args((), '{"host_id": 3}') == {"host_id": 3}
    assert job_args((), None) == {}
