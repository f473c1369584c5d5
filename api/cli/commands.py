"""``shepherd command list|show|wait|run|cancel`` over ``/api/command/``.

A command is the manager's record of one request (set up a host, change its state, remove
it): jobs that run in order, each made of steps run by a host's agent or by the manager.
Requests answer at once with the command; ``wait`` follows it to its end. ``run`` asks for
jobs by class name, as offered in an object's ``available_jobs`` (``shepherd host show
HOST --json | jq .available_jobs``).
"""

from __future__ import annotations

import datetime
import json

import click

from api.cli.credentials import pass_client
from api.cli.output import (
    Column,
    detail_text,
    emit,
    field,
    output_options,
    print_json,
    table_text,
)
from api.cli.plans import emit_plan
from api.cli.waiting import (
    COMMANDS,
    STATE_STYLES,
    WORK_COLUMNS,
    Snapshot,
    command_state,
    follow,
    poll,
    started,
    wait_options,
    work_rows,
)
from api.client import Client

COLUMNS = [
    Column("ID", field("id")),
    Column("MESSAGE", field("message"), shrink=True),
    Column("STATE", command_state, styles=STATE_STYLES),
    Column("CREATED", field("created_at"), when=True),
    Column("JOBS", lambda command: len(command.get("jobs") or []), wide=True),
    Column("DISMISSED", field("dismissed"), wide=True),
]

DETAILS = [
    Column("ID", field("id")),
    Column("Message", field("message")),
    Column("State", command_state, styles=STATE_STYLES),
    Column("Created", field("created_at"), when=True),
    Column("Logs", field("logs")),
    Column("Dismissed", field("dismissed"), wide=True),
    Column("URI", field("resource_uri"), wide=True),
]


@click.group()
def command() -> None:
    """Commands: the manager's requests in progress or done, their jobs and steps.

    \b
    Example:
      $ shepherd command list --running
      $ shepherd command wait 12
    """


@command.command("list")
@click.option("--running", is_flag=True, help="Only commands that have not finished.")
@click.option("--failed", is_flag=True, help="Only commands with a failed job.")
@output_options
@pass_client
def command_list(client: Client, running: bool, failed: bool, output: str) -> None:
    """List commands, newest first.

    \b
    Example:
      $ shepherd command list --failed
      $ shepherd command list --json | jq -r '.[] | select(.complete | not) | .message'
    """
    params = {"order_by": "-created_at"}
    if running:
        params["complete"] = "false"
    if failed:
        params["errored"] = "true"
    emit(client.iter_objects(COMMANDS, **params), COLUMNS, output, "commands")


@command.command("show")
@click.argument("command_id", metavar="ID", type=int)
@output_options
@pass_client
def command_show(client: Client, command_id: int, output: str) -> None:
    """Show a command with its jobs and their steps (--json: the API's command only).

    \b
    Example:
      $ shepherd command show 12
      $ shepherd command show 12 --json | jq -r .logs
    """
    if output == "json":
        print_json(client.get(f"{COMMANDS}{command_id}/"))
    else:
        click.echo(show_text(poll(client, command_id), wide=output == "wide"))


def show_text(snap: Snapshot, wide: bool = False, width: int | None = None,
              now: datetime.datetime | None = None) -> str:
    """The command's fields, then a table of its jobs, each followed by its steps."""
    parts = [detail_text(snap.command, DETAILS, wide=wide, width=width, now=now)]
    if snap.jobs:
        parts.append(table_text(work_rows(snap), WORK_COLUMNS, wide=wide, width=width, now=now))
    return "\n\n".join(parts)


@command.command("wait")
@click.argument("command_id", metavar="ID", type=int)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up after this long (exit 1); the command goes on.")
@output_options
@pass_client
def command_wait(client: Client, command_id: int, timeout: float | None, output: str) -> None:
    """Follow a command to its end, showing its jobs and steps.

    Exits 0 when the command succeeded, 1 when it failed or was cancelled (naming the
    job and step and its log) or is still running after --timeout. On a terminal the
    display is redrawn in place; in a pipe each change is one line. --json prints only
    the command as it ended.

    \b
    Example:
      $ shepherd command wait 12 --timeout 600
      $ shepherd command wait 12 --json | jq .errored
    """
    follow(client, {"id": command_id}, output, timeout, f"Command {command_id} succeeded.")


@command.command("run")
@click.argument("job_class", metavar="JOB_CLASS")
@click.option("--args", "pairs", multiple=True, metavar="KEY=VALUE",
              help="An argument of the job (repeatable); VALUE is read as JSON when it "
                   "parses (3, true, \"x\"), as text otherwise.")
@click.option("--args-json", metavar="JSON", help="All the job's arguments as one JSON object.")
@click.option("-m", "--message", help="What the command is for (default: the job and its args).")
@click.option("--dry-run", is_flag=True,
              help="Print the plan (jobs, steps, hosts, what it waits behind); change nothing.")
@wait_options(default=False)
@output_options
@pass_client
def command_run(client: Client, job_class: str, pairs: tuple[str, ...], args_json: str | None,
                message: str | None, dry_run: bool, wait: bool, timeout: float | None,
                output: str) -> None:
    """Run a job an object offers (its available_jobs) as a new command.

    \b
    Example:
      $ shepherd command run ForceRemoveHostJob --args host_id=3 --dry-run
      $ shepherd command run ForceRemoveHostJob --args host_id=3 --wait
      $ shepherd command run ForceRemoveHostJob --args-json '{"host_id": 3}' -m "Retire node003"
    """
    args = job_args(pairs, args_json)
    body = {"message": message or default_message(job_class, args),
            "jobs": [{"class_name": job_class, "args": args}]}
    if dry_run:
        emit_plan(client.post(COMMANDS, {**body, "dry_run": True}), output)
        return
    created = client.post(COMMANDS, body)
    started(client, created, created, output, wait, timeout,
            f"Command {created['id']} succeeded.")


@command.command("cancel")
@click.argument("command_ids", metavar="ID...", nargs=-1, required=True, type=int)
@pass_client
def command_cancel(client: Client, command_ids: tuple[int, ...]) -> None:
    """Cancel commands: their unfinished jobs stop (unless they cannot be cancelled).

    \b
    Example:
      $ shepherd command cancel 12
    """
    for command_id in command_ids:
        uri = f"{COMMANDS}{command_id}/"
        before = client.get(uri)
        if before.get("complete"):
            raise click.ClickException(f"command {command_id} already {command_state(before)}")
        after = client.patch(uri, {"cancelled": True})
        going_on = "" if after.get("complete") else "; jobs that cannot be cancelled go on"
        click.echo(f"Cancelled command {command_id}{going_on}.")


def job_args(pairs: tuple[str, ...], args_json: str | None) -> dict:
    """``("host_id=3", "name=x")`` → ``{"host_id": 3, "name": "x"}``, or the JSON object."""
    if pairs and args_json is not None:
        raise click.UsageError("give --args or --args-json, not both")
    if args_json is not None:
        try:
            doc = json.loads(args_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--args-json") from None
        if not isinstance(doc, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--args-json")
        return doc
    args = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--args")
        try:
            args[key.strip()] = json.loads(value)
        except ValueError:
            args[key.strip()] = value
    return args


def default_message(job_class: str, args: dict) -> str:
    shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items())
    return f"Run {job_class}" + (f" ({shown})" if shown else "")
