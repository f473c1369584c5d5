"""``shepherd power status|on|off|cycle NODE…`` over ``/api/node/``, the power control
devices and ``/api/command/``.

Nodes are named by xname, hostname or numeric id, and ``--group`` adds every node of a
group. Names are resolved with a few filtered requests (``xname__in``, ``hostname__in``,
``id__in``), or, for many names, one request for the whole inventory matched here. A name
that matches no node stops the command before anything is asked of the manager.

``status`` reads the outlets and their devices in one request (the device list nests its
outlets). ``on``, ``off`` and ``cycle`` start one command with one power job per node
(``PoweronNodeJob``, ``PoweroffNodeJob``, ``PowercycleNodeJob``), run by the BMC agent that
reaches the node's power control device. A node must have an outlet; a disabled node is
refused when named and left out when only its group is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import click

from api.cli.credentials import pass_client
from api.cli.output import Column, emit, output_options
from api.cli.plans import emit_plan
from api.cli.waiting import COMMANDS, started, wait_options
from api.client import Client, ShepherdError

NODES = "/api/node/"
DEVICES = "/api/power_control_device/"
IN_QUERY_MAX = 50  # names resolved with ``__in`` filters; more: the whole inventory, once
SHOWN_NAMES = 5  # nodes named in a confirmation or an error before "and N more"
_XNAME = re.compile(r"x0*(\d{1,4})c0*(\d{1,4})s0*(\d{1,4})b0*(\d{1,4})n0*(\d{1,4})",
                    re.IGNORECASE)
_JOB_INDEX = re.compile(r"\bjobs\[(\d+)\]")
_POWER = {"On": "green", "Off": "red", "Unknown": "yellow"}
NO_OUTLET = "no outlet"

# operation → (job class, verb in messages, past tense)
OPERATIONS = {"on": ("PoweronNodeJob", "Power on", "Powered on"),
              "off": ("PoweroffNodeJob", "Power off", "Powered off"),
              "cycle": ("PowercycleNodeJob", "Power cycle", "Power-cycled")}


# --- naming nodes ---------------------------------------------------------------------------

def canonical_xname(name: str) -> str | None:
    """An xname as the manager stores it (lower case, no leading zeros); None if ``name``
    is not one."""
    match = _XNAME.fullmatch(name)
    return "x{}c{}s{}b{}n{}".format(*(int(n) for n in match.groups())) if match else None


def label(node: dict) -> str:
    return node.get("xname") or node.get("hostname") or f"node {node['id']}"


def _sort_key(node: dict) -> tuple:
    """Xnames in numeric order (x3000c0s2… before x3000c0s10…), then hostnames, then ids."""
    match = _XNAME.fullmatch(node.get("xname") or "")
    numbers = tuple(int(n) for n in match.groups()) if match else ()
    return (not match, numbers, node.get("hostname") or "", node["id"])


def _match(name: str, nodes: Iterable[dict]) -> dict | None:
    """The node ``name`` stands for, as ``node set`` finds it: xname, then hostname, then id."""
    nodes = list(nodes)
    xname = canonical_xname(name)
    for found in ([n for n in nodes if xname and n.get("xname") == xname],
                  [n for n in nodes if n.get("hostname") == name],
                  [n for n in nodes if name.isascii() and name.isdigit() and n["id"] == int(name)]):
        if found:
            return found[0]
    return None


def _candidates(client: Client, names: list[str]) -> list[dict]:
    """The nodes that may match ``names``, in at most three filtered requests."""
    found: list[dict] = []
    left = list(names)
    xnames = sorted({x for x in map(canonical_xname, left) if x})
    if xnames:
        found += client.get(NODES, xname__in=xnames, limit=0)["objects"]
        left = [n for n in left if _match(n, found) is None]
    if left:
        found += client.get(NODES, hostname__in=left, limit=0)["objects"]
        left = [n for n in left if _match(n, found) is None]
    ids = [n for n in left if n.isascii() and n.isdigit() and 0 < int(n) < 2**31]
    if ids:
        found += client.get(NODES, id__in=ids, limit=0)["objects"]
    return found


def _fmt_names(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def select_nodes(client: Client, names: tuple[str, ...],
                 groups: tuple[str, ...]) -> tuple[list[dict], set[int]]:
    """The nodes named or in ``groups`` (each once, in xname order) and the ids of those
    named; a one-line error naming every name or group that matches no node."""
    names = tuple(dict.fromkeys(names))
    groups = tuple(dict.fromkeys(groups))
    if not names and not groups:
        raise click.UsageError("name at least one NODE, or a --group")
    if len(names) > IN_QUERY_MAX:
        pool = client.get(NODES, limit=0)["objects"]
        members = [n for n in pool if set(n.get("groups") or []) & set(groups)]
    else:
        pool = _candidates(client, list(names)) if names else []
        members = client.get(NODES, groups__in=list(groups), limit=0)["objects"] if groups else []
    chosen: dict[int, dict] = {}
    named: set[int] = set()
    unknown = []
    for name in names:
        node = _match(name, pool)
        if node is None:
            unknown.append(name)
        else:
            chosen[node["id"]] = node
            named.add(node["id"])
    present = {g for n in members for g in n.get("groups") or []}
    empty = [g for g in groups if g not in present]
    problems = []
    if unknown:
        problems.append(f"no node {_fmt_names([repr(n) for n in unknown])}")
    if empty:
        problems.append(f"no node in group {_fmt_names([repr(g) for g in empty])}")
    if problems:
        raise click.ClickException("; ".join(problems) + " (see: shepherd node list)")
    for node in members:
        chosen.setdefault(node["id"], node)
    return sorted(chosen.values(), key=_sort_key), named


def node_options(command: click.Command) -> click.Command:
    """``NODE…`` arguments and ``--group NAME`` (repeatable)."""
    command = click.option("--group", "groups", multiple=True, metavar="GROUP",
                           help="Every node of GROUP too (repeatable).")(command)
    return click.argument("names", metavar="[NODE]...", nargs=-1)(command)


# --- status ---------------------------------------------------------------------------------

def _checked(row: dict) -> str | None:
    """When the outlet's state was read; "-" (as is, not a time) for a node with no outlet."""
    return row["outlet"].get("power_checked_at") if row["outlet"] else "-"


def _device(row: dict) -> str:
    if row["outlet"] is None:
        return NO_OUTLET
    device = row["device"] or {}
    return device.get("name") or device.get("address") or row["outlet"].get("device") or "?"


COLUMNS = [
    Column("XNAME", lambda row: row["node"].get("xname")),
    Column("HOSTNAME", lambda row: row["node"].get("hostname")),
    Column("POWER", lambda row: (row["outlet"].get("has_power") or "Unknown")
           if row["outlet"] else None, styles=_POWER),
    Column("CHECKED", _checked, when=True, empty="never"),
    Column("DEVICE", _device, shrink=True),
    Column("ID", lambda row: row["node"]["id"], wide=True),
    Column("ENABLED", lambda row: row["node"].get("enabled"), wide=True,
           styles={"yes": "green", "no": "red"}),
    Column("OUTLET", lambda row: row["outlet"] and row["outlet"].get("identifier"), wide=True),
    Column("ADDRESS", lambda row: (row["device"] or {}).get("address"), wide=True),
]


def status_rows(client: Client, nodes: list[dict]) -> list[dict]:
    """``{"node", "outlet", "device"}`` per node, as the API renders each (the device
    without its list of outlets); outlet and device are null for a node with no outlet."""
    outlets: dict[str, dict] = {}
    devices: dict[str, dict] = {}
    if any(n.get("outlet") for n in nodes):
        for device in client.get(DEVICES, limit=0)["objects"]:
            devices[device["resource_uri"]] = {k: v for k, v in device.items() if k != "outlets"}
            for outlet in device.get("outlets") or []:
                outlets[outlet["resource_uri"]] = outlet
    rows = []
    for node in nodes:
        outlet = outlets.get(node.get("outlet") or "")
        if node.get("outlet") and outlet is None:  # added since the node was read
            outlet = client.get(node["outlet"])
        device = devices.get(outlet["device"]) if outlet else None
        rows.append({"node": node, "outlet": outlet, "device": device})
    return rows


@click.group()
def power() -> None:
    """Power nodes on, off or cycle them through their outlets, and see their power state.

    A node's power goes through the outlet it is wired to (its `outlet`, on a power control
    device such as its BMC), by a job that runs on a BMC agent. Name nodes by xname,
    hostname or id, or select groups with --group.

    \b
    Example:
      $ shepherd power status --group rack3
      $ shepherd power on x3000c0s19b1n0 x3000c0s19b2n0 --wait
    """


@power.command("status")
@node_options
@output_options
@pass_client
def power_status(client: Client, names: tuple[str, ...], groups: tuple[str, ...],
                 output: str) -> None:
    """Show the nodes' power state, as last read from their outlets.

    POWER is On, Off or Unknown (the device did not answer), "-" for a node with no outlet;
    CHECKED is when the manager last read it. --json prints one object per node with the
    API's node, outlet and device (null without an outlet).

    \b
    Example:
      $ shepherd power status x3000c0s19b1n0 nid000002
      $ shepherd power status --group rack3 --json | jq -r '.[] | select(.outlet.has_power == "Off") | .node.xname'
    """
    nodes, _ = select_nodes(client, names, groups)
    emit(status_rows(client, nodes), COLUMNS, output, "nodes")


# --- on, off, cycle ---------------------------------------------------------------------------

def _runnable(nodes: list[dict], named: set[int]) -> list[dict]:
    """The nodes a power job may act on: every one needs an outlet and, when named, to be
    enabled; disabled nodes only in a group are left out (said on stderr)."""
    no_outlet = [label(n) for n in nodes if not n.get("outlet")]
    if no_outlet:
        raise click.ClickException(
            f"no power outlet for {_fmt_names(no_outlet)}: nothing was done (a node's outlet "
            "is set by `shepherd node import` of JSON with an \"outlet\" id)")
    disabled = [label(n) for n in nodes if n.get("enabled") is False and n["id"] in named]
    if disabled:
        raise click.ClickException(
            f"disabled: {_fmt_names(disabled)}: nothing was done (`shepherd node set NODE "
            "--enable` lets power act on a node)")
    skipped = [label(n) for n in nodes if n.get("enabled") is False]
    if skipped:
        click.echo(f"Leaving out disabled node{'s' if len(skipped) > 1 else ''} "
                   f"{_fmt_names(skipped)}.", err=True)
    runnable = [n for n in nodes if n.get("enabled") is not False]
    if not runnable:
        raise click.ClickException("no enabled node to act on: nothing was done")
    return runnable


def _what(verb: str, nodes: list[dict]) -> str:
    """"Power on x3000c0s19b1n0", "Power on 3 nodes"."""
    return f"{verb} {label(nodes[0])}" if len(nodes) == 1 else f"{verb} {len(nodes)} nodes"


def _refusal(exc: ShepherdError, nodes: list[dict]) -> ShepherdError:
    """The manager's refusal with the node each ``jobs[i]`` stands for."""
    def named(match: re.Match) -> str:
        i = int(match.group(1))
        return f"{match.group(0)} ({label(nodes[i])})" if i < len(nodes) else match.group(0)
    return ShepherdError(_JOB_INDEX.sub(named, exc.message), exc.status, exc.body)


def run_power(client: Client, operation: str, names: tuple[str, ...], groups: tuple[str, ...],
              yes: bool, dry_run: bool, wait: bool, timeout: float | None, output: str) -> None:
    job_class, verb, done = OPERATIONS[operation]
    nodes, named = select_nodes(client, names, groups)
    nodes = _runnable(nodes, named)
    body = {"message": _what(verb, nodes),
            "jobs": [{"class_name": job_class, "args": {"node_id": n["id"]}} for n in nodes]}
    try:
        if dry_run:
            emit_plan(client.post(COMMANDS, {**body, "dry_run": True}), output)
            return
        if not yes:
            question = f"{verb} {_fmt_names([label(n) for n in nodes])}?"
            if operation == "cycle":
                question += " They lose power without a chance to finish what they are doing."
            elif operation == "off":
                question += " They are asked to shut down, then switched off."
            click.confirm(question, abort=True, err=True)
        created = client.post(COMMANDS, body)
    except ShepherdError as exc:
        raise _refusal(exc, nodes) from None
    started(client, created, created, output, wait, timeout, f"{_what(done, nodes)}.")


def power_options(confirms: bool) -> Callable[[Callable], Callable]:
    """What ``on``, ``off`` and ``cycle`` share: ``NODE…``, ``--group``, ``--dry-run``,
    ``--wait``/``--timeout``, the output options and (``confirms``) ``-y/--yes``."""
    def decorate(command: Callable) -> Callable:
        command = pass_client(command)
        command = output_options(command)
        command = wait_options(default=False)(command)
        command = click.option("--dry-run", is_flag=True,
                               help="Print the plan (jobs, steps, hosts, what it waits behind); "
                                    "change nothing.")(command)
        if confirms:
            command = click.option("-y", "--yes", is_flag=True,
                                   help="Do not ask for confirmation.")(command)
        return node_options(command)
    return decorate


@power.command("on")
@power_options(confirms=False)
def power_on(client: Client, names: tuple[str, ...], groups: tuple[str, ...], dry_run: bool,
             wait: bool, timeout: float | None, output: str) -> None:
    """Power nodes on, as one command with a job per node.

    Every node needs a power outlet. The jobs run on the BMC agent that reaches each
    node's power control device; --wait follows the command to its end.

    \b
    Example:
      $ shepherd power on x3000c0s19b1n0 --dry-run
      $ shepherd power on --group rack3 --wait --timeout 300
    """
    run_power(client, "on", names, groups, True, dry_run, wait, timeout, output)


@power.command("off")
@power_options(confirms=True)
def power_off(client: Client, names: tuple[str, ...], groups: tuple[str, ...], yes: bool,
              dry_run: bool, wait: bool, timeout: float | None, output: str) -> None:
    """Power nodes off, after asking (--yes does not ask).

    Each node is asked to shut down and is switched off if it has not within a minute.
    Every node needs a power outlet.

    \b
    Example:
      $ shepherd power off x3000c0s19b1n0 nid000002 --yes
      $ shepherd power off --group rack3 --yes --wait
    """
    run_power(client, "off", names, groups, yes, dry_run, wait, timeout, output)


@power.command("cycle")
@power_options(confirms=True)
def power_cycle(client: Client, names: tuple[str, ...], groups: tuple[str, ...], yes: bool,
                dry_run: bool, wait: bool, timeout: float | None, output: str) -> None:
    """Power-cycle nodes, after asking (--yes does not ask).

    The nodes lose power at once, without a chance to finish what they are doing, and
    come back on. Every node needs a power outlet.

    \b
    Example:
      $ shepherd power cycle nid000001 --yes --wait
      $ shepherd power cycle --group gpu --dry-run
    """
    run_power(client, "cycle", names, groups, yes, dry_run, wait, timeout, output)
