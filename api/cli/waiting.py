"""Following a command to its end: what ``command wait`` and every ``--wait`` share.

A command's progress is its jobs and their steps. ``watch`` polls ``/api/command/N/``,
``/api/job/?id__in=…`` and ``/api/step/?job=N`` (only for jobs that are running or changed
since the last poll: a finished job's steps never change) and shows them with
``output.Progress``. ``verdict`` turns the end into the exit status: 0 when the command
succeeded, 1 with one line naming the failed (or cancelled) job and step and its log when it
did not, and 1 when it is still running at the timeout.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import click

from api.cli.output import Column, Progress, field, print_json
from api.client import Client

COMMANDS = "/api/command/"
JOBS = "/api/job/"
STEPS = "/api/step/"
FIRST_POLL, LAST_POLL = 0.2, 2.0  # seconds between polls: quick at first, slower while idle
ID_CHUNK = 200  # job ids per ``id__in`` request, to keep URLs short
STATE_STYLES = {"succeeded": "green", "failed": "bold red", "cancelled": "yellow",
                "running": "cyan"}

WORK_COLUMNS = [
    Column("JOB", lambda row: None if row["step"] else row["job_id"], empty=""),
    Column("STEP", field("step"), empty=""),
    Column("DESCRIPTION", field("description"), shrink=True),
    Column("STATE", field("state"), styles=STATE_STYLES),
    Column("CLASS", field("class_name"), wide=True),
    Column("UPDATED", field("modified_at"), wide=True, when=True),
]


@dataclasses.dataclass
class Snapshot:
    """A command as last polled: the API's command, its jobs (by id) and their steps."""

    command: dict
    jobs: list[dict] = dataclasses.field(default_factory=list)
    steps: dict[int, list[dict]] = dataclasses.field(default_factory=dict)

    @property
    def id(self) -> int:
        return self.command["id"]


def command_state(command: dict) -> str:
    """running, failed, cancelled or succeeded (a failure outranks a cancellation)."""
    if not command.get("complete"):
        return "running"
    if command.get("errored"):
        return "failed"
    return "cancelled" if command.get("cancelled") else "succeeded"


def job_state(job: dict) -> str:
    if job["state"] == "complete":
        return command_state({**job, "complete": True})
    return "running" if job["state"] == "tasked" else "pending"


def step_state(step: dict, job: dict) -> str:
    """A step left incomplete by a job that ended (cancelled, preempted) is cancelled."""
    if step["state"] == "incomplete":
        return "cancelled" if job["state"] == "complete" else "running"
    return "succeeded" if step["state"] == "success" else "failed"


def work_rows(snap: Snapshot) -> list[dict]:
    """One row per job, each followed by one per step it has started, in order."""
    rows = []
    for job in snap.jobs:
        rows.append({"key": f"job {job['id']}", "job_id": job["id"], "step": None,
                     "description": job["description"], "state": job_state(job),
                     "class_name": job["class_name"], "modified_at": job["modified_at"]})
        for step in snap.steps.get(job["id"], []):
            rows.append({"key": f"step {step['id']}", "job_id": job["id"],
                         "step": f"{step['step_index'] + 1}/{step['step_count']}",
                         "description": step["description"], "state": step_state(step, job),
                         "class_name": step["class_name"], "modified_at": step["modified_at"]})
    return rows


def _line(row: dict) -> str:
    """A row as the plain display prints it when it changes."""
    where = f"job {row['job_id']}" + (f" step {row['step']}" if row["step"] else "")
    return f"{where}: {row['description']}: {row['state']}"


# --- polling -------------------------------------------------------------------------------

def poll(client: Client, command_id: int, previous: Snapshot | None = None) -> Snapshot:
    """The command, its jobs and their steps now; steps of finished jobs that have not
    changed since ``previous`` are taken from it instead of fetched again."""
    command = client.get(f"{COMMANDS}{command_id}/")
    ids = [_id_of(uri) for uri in command.get("jobs") or []]
    jobs = []
    for start in range(0, len(ids), ID_CHUNK):
        jobs += client.iter_objects(JOBS, id__in=ids[start:start + ID_CHUNK])
    jobs.sort(key=lambda job: job["id"])
    before = {job["id"]: job for job in previous.jobs} if previous else {}
    steps = {}
    for job in jobs:
        old = before.get(job["id"])
        if job["state"] == "pending":
            steps[job["id"]] = []
        elif old and job["state"] == "complete" and old["modified_at"] == job["modified_at"]:
            steps[job["id"]] = previous.steps.get(job["id"], [])
        else:
            found = client.iter_objects(STEPS, job=job["id"], order_by="created_at")
            steps[job["id"]] = sorted(found, key=lambda step: step["id"])
    return Snapshot(command, jobs, steps)


def watch(client: Client, command_id: int, timeout: float | None, show: bool = True,
          wide: bool = False) -> Snapshot:
    """Poll until the command completes or ``timeout`` seconds pass; the last snapshot
    (its command not ``complete`` when time ran out). ``show`` draws the progress."""
    started = time.monotonic()
    deadline = None if timeout is None else started + timeout
    interval, snap, shown = FIRST_POLL, None, None
    with Progress(WORK_COLUMNS, _line, wide=wide, quiet=not show) as progress:
        while True:
            snap = poll(client, command_id, snap)
            rows, state = work_rows(snap), command_state(snap.command)
            elapsed = f"{time.monotonic() - started:.0f}s"
            status = f"running for {elapsed}" if state == "running" else f"{state} after {elapsed}"
            progress.show(f"Command {snap.id}: {snap.command['message']}", rows, status)
            if snap.command.get("complete"):
                return snap
            if deadline is not None and time.monotonic() >= deadline:
                return snap
            interval = FIRST_POLL if rows != shown else min(interval * 1.5, LAST_POLL)
            shown = rows
            pause = interval if deadline is None else min(interval, deadline - time.monotonic())
            time.sleep(max(pause, 0))


# --- the end of a command -----------------------------------------------------------------

def verdict(snap: Snapshot, timeout: float | None) -> None:
    """Nothing when the command succeeded; otherwise a one-line error (exit 1) saying
    which job and step failed or was cancelled, and its log."""
    state = command_state(snap.command)
    if state == "succeeded":
        return
    if state == "running":
        raise click.ClickException(f"command {snap.id} still running after {timeout:g} s")
    wanted = "errored" if state == "failed" else "cancelled"
    job = next((j for j in snap.jobs if j.get(wanted)), None)
    what = f"command {snap.id} {'failed' if state == 'failed' else 'was cancelled'}"
    if job is None:
        logs = _one_line(snap.command.get("logs") or "")
        raise click.ClickException(f"{what}: {logs}" if logs else what)
    failed = [s for s in snap.steps.get(job["id"], []) if s["state"] == "failed"]
    if state == "failed" and failed:
        step = failed[-1]
        why = (f"step {step['step_index'] + 1}/{step['step_count']} ({step['description']}) "
               f"failed: {step['log']}")
    else:
        why = _job_log(snap.command, job) or state
    raise click.ClickException(_one_line(f"{what}: job {job['id']} ({job['description']}): {why}"))


def _job_log(command: dict, job: dict) -> str:
    """A job's own log, from the command's ``logs`` ("description: log" lines)."""
    prefix = f"{job['description']}: "
    for line in (command.get("logs") or "").splitlines():
        if line.startswith(prefix):
            return line[len(prefix):]
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _id_of(uri: str) -> int:
    """``/api/job/12/`` → 12."""
    return int(uri.rstrip("/").rsplit("/", 1)[-1])


# --- options and the common ending of commands that start a command -----------------------

def wait_options(default: bool) -> Callable[[Callable], Callable]:
    """``--wait/--no-wait`` (``default`` says which holds) and ``--timeout SECONDS``."""
    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args: Any, wait: bool, timeout: float | None, **kwargs: Any) -> Any:
            if timeout is not None and not wait:
                raise click.UsageError("--timeout applies only while waiting (--wait)")
            return command(*args, wait=wait, timeout=timeout, **kwargs)
        flag = "--wait/--no-wait" if default else "--wait"
        help_ = ("Follow the command to its end, showing its jobs and steps "
                 "(as `shepherd command wait` does); exit 1 if it fails.")
        wrapper = click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                               metavar="SECONDS",
                               help="Stop waiting after this long (exit 1).")(wrapper)
        return click.option(flag, "wait", default=default, is_flag=True,
                            show_default=default, help=help_)(wrapper)
    return decorate


def follow(client: Client, command: dict, output: str, timeout: float | None,
           success: str) -> None:
    """Wait for ``command`` (progress unless ``output`` is json, which prints the command
    as it ended), print ``success`` if it succeeded, or exit 1 saying why not."""
    try:
        snap = watch(client, command["id"], timeout, show=output != "json", wide=output == "wide")
    except KeyboardInterrupt:
        raise click.ClickException(f"stopped waiting; command {command['id']} goes on "
                                   f"(shepherd command wait {command['id']})") from None
    if output == "json":
        print_json(snap.command)
    verdict(snap, timeout)
    if output != "json":
        click.echo(success)


def started(client: Client, command: dict, answer: Any, output: str, wait: bool,
            timeout: float | None, success: str) -> None:
    """After a request started ``command``: follow it (``wait``), or say how to. ``answer``
    is the API's response, printed as it is with ``--json``."""
    if wait:
        follow(client, command, output, timeout, success)
    elif output == "json":
        print_json(answer)
    else:
        click.echo(f"Started command {command['id']}: {command['message']} "
                   f"(follow it: shepherd command wait {command['id']})")
