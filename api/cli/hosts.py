"""``shepherd host list|show|set-state|remove`` over ``/api/host/``.

Hosts are named by FQDN on the command line (a numeric id works too). A state change or a
removal is a command of the manager's engine: the request answers at once with the command
and the CLI follows it (``--wait``; by default for ``remove``). Removing a host revokes its
agent's certificate: the agent can no longer connect until it registers again.
"""

from __future__ import annotations

import json

import click

from api.cli.credentials import pass_client
from api.cli.output import Column, emit, emit_one, field, output_options
from api.cli.plans import emit_plan
from api.cli.waiting import COMMANDS, started, wait_options
from api.client import Client, ShepherdError

LIST = "/api/host/"
FORCE_REMOVE = "ForceRemoveHostJob"
STATES = ("managed", "monitored", "packages_installed", "removed", "working")  # to complete
_CONNECTED = {"yes": "green", "no": "red"}


def _profile(host: dict) -> str:
    return (host.get("server_profile") or {}).get("name", "")


def _property(name: str) -> object:
    def value(host: dict) -> object:
        try:
            return json.loads(host.get("properties") or "{}").get(name)
        except (ValueError, AttributeError):
            return None
    return value


def _gib(value: object) -> str | None:
    """Bytes as GiB; agents report int64s as JSON strings (protobuf's JSON mapping)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return f"{value / 2**30:.1f} GiB" if isinstance(value, int) else None


COLUMNS = [
    Column("FQDN", field("fqdn")),
    Column("PROFILE", _profile, shrink=True),
    Column("ROLES", field("roles"), shrink=True),
    Column("STATE", field("state")),
    Column("CONNECTED", field("connected"), styles=_CONNECTED),
    Column("LAST CONTACT", field("last_contact"), when=True, empty="never"),
    Column("ID", field("id"), wide=True),
    Column("ADDRESS", field("address"), wide=True),
    Column("AGENT", field("agent_version"), wide=True),
    Column("BOOTED", field("boot_time"), wide=True, when=True),
]

DETAILS = [
    Column("ID", field("id")),
    Column("FQDN", field("fqdn")),
    Column("Node name", field("nodename")),
    Column("Profile", _profile),
    Column("Roles", field("roles")),
    Column("State", field("state")),
    Column("Connected", field("connected"), styles=_CONNECTED),
    Column("Last contact", field("last_contact"), when=True, empty="never"),
    Column("Address", field("address")),
    Column("Agent version", field("agent_version")),
    Column("Booted", field("boot_time"), when=True),
    Column("Architecture", _property("architecture")),
    Column("Kernel", _property("kernel")),
    Column("CPUs", _property("cpu_count")),
    Column("Memory", lambda host: _gib(_property("memory_bytes")(host))),
    Column("Install method", field("install_method"), wide=True),
    Column("State changed", field("state_modified_at"), wide=True, when=True),
    Column("URI", field("resource_uri"), wide=True),
]


@click.group()
def host() -> None:
    """The machines whose agents have registered with the manager.

    \b
    Example:
      $ shepherd host list
      $ shepherd host show node001.cluster
    """


@host.command("list")
@click.option("--role", help="Only hosts with this agent role (storage, bmc, image-builder, compute).")
@output_options
@pass_client
def host_list(client: Client, role: str | None, output: str) -> None:
    """List the hosts.

    \b
    Example:
      $ shepherd host list --role compute
      $ shepherd host list --json | jq -r '.[] | select(.connected | not) | .fqdn'
    """
    params = {"role": role} if role else {}
    emit(client.iter_objects(LIST, order_by="fqdn", **params), COLUMNS, output, "hosts")


@host.command("show")
@click.argument("name", metavar="HOST")
@output_options
@pass_client
def host_show(client: Client, name: str, output: str) -> None:
    """Show one host, by FQDN or id.

    \b
    Example:
      $ shepherd host show node001.cluster
      $ shepherd host show 12 --json | jq .properties
    """
    emit_one(find_host(client, name), DETAILS, output)


@host.command("set-state")
@click.argument("name", metavar="HOST")
@click.argument("state", metavar="STATE",
                shell_complete=lambda ctx, param, incomplete: [
                    s for s in STATES if s.startswith(incomplete)])
@click.option("--dry-run", is_flag=True,
              help="Print the plan (jobs, steps, hosts, what it waits behind); change nothing.")
@wait_options(default=False)
@output_options
@pass_client
def host_set_state(client: Client, name: str, state: str, dry_run: bool, wait: bool,
                   timeout: float | None, output: str) -> None:
    """Take a host to STATE through the jobs that lead there (see its available_transitions).

    \b
    Example:
      $ shepherd host set-state node001.cluster removed --dry-run
      $ shepherd host set-state node001.cluster removed --wait --timeout 300
    """
    found = find_host(client, name)
    if dry_run:
        emit_plan(client.put(found["resource_uri"], {"state": state, "dry_run": True}), output)
        return
    answer = client.put(found["resource_uri"], {"state": state})
    if answer is None:  # 204: there already, and nothing queued moves it
        click.echo(f"Host {found['fqdn']} is already {state}.", err=True)
        return
    started(client, answer["command"], answer, output, wait, timeout,
            f"Host {found['fqdn']} is {state}.")


@host.command("remove")
@click.argument("name", metavar="HOST")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True,
              help="Force Remove: cancel the host's unfinished jobs and remove it at once "
                   "(for a host whose agent never connected, held by its set-up).")
@wait_options(default=True)
@pass_client
def host_remove(client: Client, name: str, yes: bool, force: bool, wait: bool,
                timeout: float | None) -> None:
    """Remove a host and revoke its agent's certificate, waiting until it is done.

    The removal waits for the host's running jobs; --force cancels them instead.

    \b
    Example:
      $ shepherd host remove node001.cluster --yes
      $ shepherd host remove node002.cluster --force --yes --no-wait
    """
    found = find_host(client, name)
    fqdn = found["fqdn"]
    offered = next((j for j in found.get("available_jobs") or []
                    if j.get("class_name") == FORCE_REMOVE), None)
    if force and offered is None:
        raise click.ClickException(f"host {fqdn} does not offer Force Remove")
    if not yes:
        question = (f"Force remove host {fqdn}? {offered.get('confirmation') or ''}".strip()
                    if force else f"Remove host {fqdn} and revoke its certificate?")
        click.confirm(question, abort=True, err=True)
    if force:
        command = client.post(COMMANDS, {"message": f"{offered['verb']} {fqdn}", "jobs": [
            {"class_name": FORCE_REMOVE, "args": offered["args"]}]})
    else:
        command = client.delete(found["resource_uri"])["command"]
        busy = (found.get("locks") or {}).get("write") or []
        if busy and wait:
            jobs = f"job{'s' if len(busy) > 1 else ''} {', '.join(str(j) for j in busy)}"
            click.echo(f"The removal waits for {jobs} holding {fqdn} "
                       "(--force removes the host at once).", err=True)
    started(client, command, command, "table", wait, timeout, f"Removed host {fqdn}.")


def find_host(client: Client, name: str) -> dict:
    """The live host with FQDN ``name`` (or that id); a one-line error when there is none."""
    found = client.get(LIST, fqdn=name, limit=1)
    if found and found.get("objects"):
        return found["objects"][0]
    if name.isascii() and name.isdigit():
        try:
            return client.get(f"{LIST}{name}/")
        except ShepherdError as exc:
            if exc.status != 404:
                raise
    raise click.ClickException(f"no host {name!r}")
