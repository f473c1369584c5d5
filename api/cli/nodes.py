"""``shepherd node list|import|set`` over ``/api/node/``.

Nodes are named by xname on the command line (a hostname or a numeric id works too). An
import is one bulk request (``PATCH /api/node/``): the manager creates and updates every
node of the file in one transaction, or refuses the whole file naming the row at fault.
"""

from __future__ import annotations

import csv
import io
import json
import os

import click

from api.cli.credentials import pass_client
from api.cli.output import Column, emit, emit_one, field, output_options
from api.client import Client, ShepherdError

LIST = "/api/node/"
CSV_COLUMNS = ("xname", "hostname", "role", "sub_role", "groups", "enabled", "macs",
               "architecture")
LISTS = ("groups", "macs")  # ";"-separated in a CSV cell
_ENABLED = {"yes": "green", "no": "red"}


def _last_id(name: str) -> object:
    """``/api/host/12/`` → 12."""
    def value(node: dict) -> object:
        uri = node.get(name)
        return int(uri.rstrip("/").rsplit("/", 1)[1]) if uri else None
    return value


COLUMNS = [
    Column("XNAME", field("xname")),
    Column("HOSTNAME", field("hostname")),
    Column("ROLE", field("role")),
    Column("SUB-ROLE", field("sub_role")),
    Column("GROUPS", field("groups"), shrink=True),
    Column("ENABLED", field("enabled"), styles=_ENABLED),
    Column("ID", field("id"), wide=True),
    Column("ARCH", field("architecture"), wide=True),
    Column("MACS", field("macs"), wide=True),
    Column("OUTLET", _last_id("outlet"), wide=True),
    Column("HOST", _last_id("host"), wide=True),
]

DETAILS = [
    Column("ID", field("id")),
    Column("Xname", field("xname")),
    Column("Hostname", field("hostname")),
    Column("Role", field("role")),
    Column("Sub-role", field("sub_role")),
    Column("Groups", field("groups")),
    Column("Enabled", field("enabled"), styles=_ENABLED),
    Column("Architecture", field("architecture")),
    Column("MACs", field("macs")),
    Column("Outlet", field("outlet")),
    Column("Host", field("host")),
    Column("Modified", field("modified_at"), when=True, wide=True),
    Column("URI", field("resource_uri"), wide=True),
]


@click.group()
def node() -> None:
    """The node inventory: xnames, roles, groups, MACs (what boots and power act on).

    \b
    Example:
      $ shepherd node import nodes.csv
      $ shepherd node list --role Compute --group rack3
    """


@node.command("list")
@click.option("--role", help="Only nodes with this role (Compute, Application, Storage, …).")
@click.option("--group", help="Only nodes in this group.")
@click.option("--enabled/--disabled", default=None, help="Only enabled (or disabled) nodes.")
@output_options
@pass_client
def node_list(client: Client, role: str | None, group: str | None, enabled: bool | None,
              output: str) -> None:
    """List the nodes, by xname.

    \b
    Example:
      $ shepherd node list --group rack3 --disabled
      $ shepherd node list --role Compute --json | jq -r '.[].xname'
    """
    params: dict[str, object] = {"order_by": "xname"}
    if role:
        params["role"] = role
    if group:
        params["groups"] = group
    if enabled is not None:
        params["enabled"] = "true" if enabled else "false"
    emit(client.iter_objects(LIST, page_size=1000, **params), COLUMNS, output, "nodes")


@node.command("import")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file against the inventory; save nothing.")
@pass_client
def node_import(client: Client, path: str, dry_run: bool) -> None:
    """Create and update nodes from FILE, all or none.

    FILE is JSON (a list of nodes, or {"objects": [...]}, as the API takes them) or CSV
    with a header row of some of: xname, hostname, role, sub_role, groups, enabled, macs,
    architecture (groups and macs separated by ";"). A row updates the node of its xname
    (or, without one, hostname) and creates it when there is none.

    \b
    Example:
      $ shepherd node import nodes.csv --dry-run
      $ cat nodes.csv
      xname,hostname,role,sub_role,groups,enabled,macs,architecture
      x3000c0s19b1n0,nid000001,Compute,,rack3;gpu,true,b4:2e:99:00:01:10,x86_64
    """
    objects = read_nodes(path)
    answer = client.patch(LIST, {"objects": objects, "dry_run": dry_run})
    what = "Would import" if dry_run else "Imported"
    click.echo(f"{what} {len(objects)} node{'s' if len(objects) != 1 else ''}: "
               f"{answer['created']} created, {answer['updated']} updated, "
               f"{answer['unchanged']} unchanged.")


@node.command("set")
@click.argument("name", metavar="NODE")
@click.option("--role", help="New role (Compute, Application, Storage, Service, …).")
@click.option("--sub-role", help="New sub-role (Worker, UAN, Gateway, …; \"\" for none).")
@click.option("--group-add", "added", multiple=True, metavar="GROUP",
              help="Add the node to GROUP (repeatable).")
@click.option("--group-remove", "removed", multiple=True, metavar="GROUP",
              help="Take the node out of GROUP (repeatable).")
@click.option("--enable/--disable", "enabled", default=None,
              help="Let boots and power act on the node, or not.")
@output_options
@pass_client
def node_set(client: Client, name: str, role: str | None, sub_role: str | None,
             added: tuple[str, ...], removed: tuple[str, ...], enabled: bool | None,
             output: str) -> None:
    """Change a node, named by xname, hostname or id.

    \b
    Example:
      $ shepherd node set x3000c0s19b1n0 --group-add gpu --group-remove spare
      $ shepherd node set nid000001 --role Application --sub-role UAN --disable
    """
    found = find_node(client, name)
    changes: dict[str, object] = {}
    if role is not None:
        changes["role"] = role
    if sub_role is not None:
        changes["sub_role"] = sub_role
    if added or removed:
        groups = [g for g in found["groups"] if g not in removed]
        changes["groups"] = groups + [g for g in added if g not in groups]
    if enabled is not None:
        changes["enabled"] = enabled
    if not changes:
        raise click.UsageError("nothing to change: give --role, --sub-role, --group-add, "
                               "--group-remove, --enable or --disable")
    emit_one(client.patch(found["resource_uri"], changes), DETAILS, output)


def find_node(client: Client, name: str) -> dict:
    """The node with xname, hostname or id ``name``; a one-line error when there is none."""
    for key in ("xname", "hostname"):
        try:
            found = client.get(LIST, **{key: name}, limit=1)["objects"]
        except ShepherdError as exc:
            if exc.status != 400:
                raise
            found = []
        if found:
            return found[0]
    if name.isascii() and name.isdigit():
        try:
            return client.get(f"{LIST}{name}/")
        except ShepherdError as exc:
            if exc.status != 404:
                raise
    raise click.ClickException(f"no node {name!r}")


def read_nodes(path: str) -> list[dict]:
    """The nodes of a JSON or CSV file, as the API takes them."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if os.path.splitext(path)[1].lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _json_nodes(path, text)
    return csv_nodes(path, text)


def _json_nodes(path: str, text: str) -> list[dict]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise click.ClickException(f"{path}: not valid JSON: {exc}") from None
    objects = doc.get("objects") if isinstance(doc, dict) else doc
    if not isinstance(objects, list):
        raise click.ClickException(f"{path}: expected a list of nodes or {{\"objects\": [...]}}")
    return objects


def csv_nodes(path: str, text: str) -> list[dict]:
    """Rows as nodes: an empty cell leaves the field out (lists: an empty list)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if not header or unknown:
        problem = f"unknown column {unknown[0]!r}" if unknown else "no header row"
        raise click.ClickException(f"{path}: {problem} (columns: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    nodes = []
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise click.ClickException(f"{path} line {line}: more cells than columns")
        nodes.append(_csv_node(path, line, row))
    return nodes


def _csv_node(path: str, line: int, row: dict[str, str | None]) -> dict:
    node: dict[str, object] = {}
    for name, cell in row.items():
        cell = (cell or "").strip()
        if name in LISTS:
            node[name] = [v.strip() for v in cell.split(";") if v.strip()]
        elif name == "enabled" and cell:
            if cell.lower() not in ("true", "yes", "1", "false", "no", "0"):
                raise click.ClickException(f"{path} line {line}: enabled must be true or false")
            node[name] = cell.lower() in ("true", "yes", "1")
        elif cell or name == "sub_role":
            node[name] = cell
    return node
