"""What ``--dry-run`` prints: the plan the manager would carry out, with nothing changed.

The manager answers a dry run with a preview (``"dry_run": true``): the jobs in the order
they would run, each with its steps (on the host's agent or on the manager), the state
change it makes and what it waits for; the objects it changes; the hosts whose agents would
run steps; and the queued commands the new one would wait behind. ``--json`` prints that
preview as it is.
"""

from __future__ import annotations

import datetime
import re

import click

from api.cli.output import Column, detail_text, field, print_json, table_text

_IN_PLAN = re.compile(r"^job (\d+)$")
_QUEUED = re.compile(r"^queued job (\d+)$")


def _waits(label: str) -> str:
    """The preview's "job 0" (the plan's first job) as "#1"; "queued job 12" as "job 12"."""
    if found := _IN_PLAN.match(label):
        return f"#{int(found.group(1)) + 1}"
    if found := _QUEUED.match(label):
        return f"job {found.group(1)}"
    return label


def _change(job: dict) -> str | None:
    if not job.get("to_state"):
        return None
    return f"{job.get('from_state') or '?'} -> {job['to_state']}"


COLUMNS = [
    Column("#", field("number")),
    Column("DESCRIPTION", field("description"), shrink=True),
    Column("RUNS ON", field("runs_on"), empty=""),
    Column("STATE CHANGE", field("change"), empty=""),
    Column("WAITS FOR", field("waits_for"), empty=""),
    Column("CLASS", field("class_name"), wide=True),
    Column("ACTION", field("action"), wide=True, empty=""),
]

SUMMARY = [
    Column("Objects", lambda plan: [f"{o['type']} {o['label']}" for o in plan.get("objects") or []],
           empty="none"),
    Column("Hosts", lambda plan: [h["fqdn"] for h in plan.get("hosts") or []],
           empty="none (no step runs on an agent)"),
    Column("Waits behind", lambda plan: [f"command {c['id']} ({c['message']})"
                                         for c in plan.get("waits_behind") or []],
           empty="nothing"),
]


def plan_rows(plan: dict) -> list[dict]:
    """One row per job (numbered 1, 2, …), each followed by its steps (1.1, 1.2, …)."""
    rows = []
    for n, job in enumerate(plan.get("jobs") or [], 1):
        rows.append({"number": str(n), "description": job["description"], "runs_on": None,
                     "change": _change(job),
                     "waits_for": [_waits(w) for w in job.get("wait_for") or []],
                     "class_name": job["class_name"], "action": None})
        for m, step in enumerate(job.get("steps") or [], 1):
            rows.append({"number": f"{n}.{m}", "description": step["description"],
                         "runs_on": step["runs_on"], "change": None, "waits_for": None,
                         "class_name": step["class_name"], "action": step.get("action")})
    return rows


def plan_text(plan: dict, wide: bool = False, width: int | None = None,
              now: datetime.datetime | None = None) -> str:
    """The plan as a heading, a table of its jobs and steps, and what it touches."""
    count = len(plan.get("jobs") or [])
    heading = f"{plan.get('message', 'Plan')}: {count} job{'' if count == 1 else 's'}"
    body = (table_text(plan_rows(plan), COLUMNS, wide=wide, width=width, now=now) if count
            else "No new jobs: the request joins queued work.")
    return "\n\n".join([heading, body, detail_text(plan, SUMMARY, width=width, now=now)])


def emit_plan(plan: dict, output: str) -> None:
    """Print a dry run's preview; a note on stderr says that nothing was changed."""
    if output == "json":
        print_json(plan)
        return
    click.echo(plan_text(plan, wide=output == "wide"))
    click.echo("Dry run: nothing was changed.", err=True)
