"""The tables' layout, checked against stored expected output.

The objects are API responses captured from a real manager (``samples/``) and the clock is
fixed, so relative times ("5m ago") and column widths are the same on every run.
"""

import datetime
import json

import click
import pytest

from api.cli import alerts, auth, commands, hosts, output, plans, tokens, users, waiting
from tests.cli.golden import HERE, check_expected, sample

NOW = datetime.datetime(2026, 11, 24, 5, 43, tzinfo=datetime.UTC)
LATER = datetime.datetime(2026, 11, 24, 7, 35, tzinfo=datetime.UTC)  # the engine samples'
TABLES = [("users", users.COLUMNS), ("hosts", hosts.COLUMNS),
          ("registration_tokens", tokens.COLUMNS), ("alerts", alerts.COLUMNS)]


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
@pytest.mark.parametrize(("noun", "columns"), TABLES, ids=[t[0] for t in TABLES])
def test_list_tables(noun, columns, wide):
    text = output.table_text(sample(f"{noun}.json"), columns, wide=wide, now=NOW)
    check_expected(f"{noun}{'-wide' if wide else ''}.txt", text)


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_host_show(wide):
    text = output.detail_text(sample("hosts.json")[0], hosts.DETAILS, wide=wide, now=NOW)
    check_expected(f"host-show{'-wide' if wide else ''}.txt", text)


def test_a_narrow_terminal_cuts_free_text_cells():
    text = output.table_text(sample("alerts.json"), alerts.COLUMNS, width=72, now=NOW)
    assert max(len(line) for line in text.splitlines()) == 72
    check_expected("alerts-72-columns.txt", text)


def test_identifying_columns_are_never_cut():
    text = output.table_text(sample("hosts.json"), hosts.COLUMNS, width=40, now=NOW)
    assert "demo00000.sim.shepherd  " in text and "LAST CONTACT" in text
    check_expected("hosts-40-columns.txt", text)


def test_context_table():
    rows = [{"name": "default", "current": True, "url": "https://mgr.example.com:8443",
             "username": "admin", "logged_in": True, "ca": "/root/.config/shepherd/ca-0f.pem"},
            {"name": "lab", "current": False, "url": "https://10.0.0.5:8443",
             "username": "ops", "logged_in": False, "ca": "insecure"}]
    check_expected("contexts-wide.txt", output.table_text(rows, auth.CONTEXT_COLUMNS, wide=True))


def test_no_trailing_blanks_and_no_colour_in_a_pipe():
    text = output.table_text(sample("alerts.json"), alerts.COLUMNS, wide=True, now=NOW)
    assert "\x1b[" not in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_colour_on_a_terminal_unless_no_color(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's way to say "this is a terminal"
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in output.table_text(sample("alerts.json"), alerts.COLUMNS, now=NOW)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in output.table_text(sample("alerts.json"), alerts.COLUMNS, now=NOW)


@pytest.mark.parametrize(("seconds", "shown"), [
    (0, "0s ago"), (59, "59s ago"), (-599, "in 10m"), (3599, "1h ago"), (-7200, "in 2h"),
    (47 * 3600, "47h ago"), (49 * 3600, "2d ago")])
def test_relative_times(seconds, shown):
    moment = NOW - datetime.timedelta(seconds=seconds)
    assert output.age(moment.isoformat(), NOW) == shown
    assert output.age(moment.replace(tzinfo=None).isoformat(), NOW) == shown  # naive is UTC


def failed_set_up() -> waiting.Snapshot:
    """A set-up command whose agent lacked ``ip`` and ``mount``, as ``command show`` polls it."""
    doc = json.loads((HERE / "samples" / "command-failed.json").read_text())
    return waiting.Snapshot(doc["command"], doc["jobs"], {
        job["id"]: [s for s in doc["steps"] if s["job"] == job["resource_uri"]]
        for job in doc["jobs"]})


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_command_list(wide):
    text = output.table_text(sample("commands.json"), commands.COLUMNS, wide=wide, now=LATER)
    check_expected(f"commands{'-wide' if wide else ''}.txt", text)


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
def test_command_show(wide):
    text = commands.show_text(failed_set_up(), wide=wide, now=LATER)
    check_expected(f"command-show{'-wide' if wide else ''}.txt", text)


@pytest.mark.parametrize("wide", [False, True], ids=["table", "wide"])
@pytest.mark.parametrize("name", ["plan-setup", "plan-remove"])
def test_dry_run_plans(name, wide):
    plan = json.loads((HERE / "samples" / f"{name}.json").read_text())
    check_expected(f"{name}{'-wide' if wide else ''}.txt", plans.plan_text(plan, wide=wide))


def test_a_failed_command_names_its_job_step_and_log():
    with pytest.raises(click.ClickException) as failed:
        waiting.verdict(failed_set_up(), None)
    assert failed.value.message == (
        "command 2 failed: job 3 (Validate host node002.cluster.example): step 1/2 (Check the "
        "machine against its roles' requirements) failed: missing: command ip, command mount")


def test_a_command_cancelled_before_its_jobs_ran_gives_the_jobs_log():
    cancelled = waiting.Snapshot(sample("commands.json")[0], [
        {"id": 7, "description": "Validate host node004.cluster.example", "cancelled": True}])
    with pytest.raises(click.ClickException) as failed:
        waiting.verdict(cancelled, None)
    assert failed.value.message == ("command 4 was cancelled: job 7 (Validate host "
                                    "node004.cluster.example): cancelled by request")
