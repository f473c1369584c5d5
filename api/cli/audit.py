"""``shepherd audit list`` over ``/api/audit_log/`` (superusers): who changed what, from where,
when, and how it ended — requests, logins and actions sent to agents."""

from __future__ import annotations

import click

from api.cli.credentials import pass_client
from api.cli.output import Column, emit, field, output_options
from api.client import Client

LIST = "/api/audit_log/"
OUTCOME_STYLES = {"refused": "red", "failed": "red", "expired": "red"}

COLUMNS = [
    Column("WHEN", field("at"), when=True),
    Column("USER", field("username")),
    Column("KIND", field("kind")),
    Column("METHOD", field("method")),
    Column("OBJECT", lambda r: f"{r['object_type']} {r['object_id']}".strip(), shrink=True),
    Column("STATUS", field("status")),
    Column("OUTCOME", field("outcome"), styles=OUTCOME_STYLES),
    Column("PATH", field("path"), wide=True),
    Column("FROM", field("address"), wide=True),
    Column("SUMMARY", field("summary"), wide=True, shrink=True),
]


@click.group()
def audit() -> None:
    """The audit log: every change, login and action, with its outcome (superusers only).

    \b
    Example:
      $ shepherd audit list --user alice --since 2026-11-24T00:00:00Z
    """


@audit.command("list")
@click.option("--user", help="Only what this user did (or claimed to be, for failed logins).")
@click.option("--object-type", help="Only records about this kind of object, e.g. host, user.")
@click.option("--object-id", help="Only records about this object id (with --object-type).")
@click.option("--kind", type=click.Choice(["request", "login", "action"]), help="Only this kind.")
@click.option("--since", metavar="TIME", help="Only records at or after this ISO 8601 time.")
@output_options
@pass_client
def audit_list(client: Client, user: str | None, object_type: str | None,
               object_id: str | None, kind: str | None, since: str | None, output: str) -> None:
    """List audit records, newest first.

    \b
    Example:
      $ shepherd audit list --object-type host --object-id 12 -o wide
      $ shepherd audit list --kind login --json | jq -r '.[] | select(.outcome == "refused") | .username'
    """
    params = {"order_by": "-at", "user": user, "object_type": object_type,
              "object_id": object_id, "kind": kind, "at__gte": since}
    emit(client.iter_objects(LIST, **{k: v for k, v in params.items() if v is not None}),
         COLUMNS, output, "audit records")
