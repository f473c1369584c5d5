"""``shepherd alert list|dismiss`` over ``/api/alert/``.

The manager raises and ends alerts itself (an agent out of contact, a failed job); people
only acknowledge them, by setting ``dismissed``. An alert that ended stays as history.
"""

from __future__ import annotations

import click

from api.cli.credentials import pass_client
from api.cli.output import Column, emit, field, output_options
from api.client import Client

LIST = "/api/alert/"
SEVERITY_STYLES = {"CRITICAL": "bold red", "ERROR": "red", "WARNING": "yellow"}

COLUMNS = [
    Column("ID", field("id")),
    Column("SEVERITY", field("severity"), styles=SEVERITY_STYLES),
    Column("SUBJECT", field("alert_item_str"), shrink=True),
    Column("MESSAGE", field("message"), shrink=True),
    Column("BEGAN", field("begin"), when=True),
    Column("ACTIVE", lambda alert: bool(alert.get("active"))),
    Column("TYPE", field("alert_type"), wide=True),
    Column("DISMISSED", field("dismissed"), wide=True),
    Column("ENDED", field("end"), wide=True, when=True),
]


@click.group()
def alert() -> None:
    """Alerts the manager raised about hosts and other objects.

    \b
    Example:
      $ shepherd alert list --active
      $ shepherd alert dismiss 42
    """


@alert.command("list")
@click.option("--active", is_flag=True, help="Only alerts whose condition still holds.")
@click.option("--undismissed", is_flag=True, help="Only alerts nobody has dismissed.")
@output_options
@pass_client
def alert_list(client: Client, active: bool, undismissed: bool, output: str) -> None:
    """List alerts, newest first.

    \b
    Example:
      $ shepherd alert list --active
      $ shepherd alert list --json | jq -r '.[] | select(.severity == "ERROR") | .message'
    """
    params = {"order_by": "-begin"}
    if active:
        params["active"] = "true"
    if undismissed:
        params["dismissed"] = "false"
    emit(client.iter_objects(LIST, **params), COLUMNS, output, "alerts")


@alert.command("dismiss")
@click.argument("alert_ids", metavar="ID...", nargs=-1, required=True, type=int)
@pass_client
def alert_dismiss(client: Client, alert_ids: tuple[int, ...]) -> None:
    """Mark alerts as seen (they stay listed, with DISMISSED yes in -o wide).

    \b
    Example:
      $ shepherd alert dismiss 42 43
    """
    for alert_id in alert_ids:
        client.patch(f"{LIST}{alert_id}/", {"dismissed": True})
        click.echo(f"Dismissed alert {alert_id}.")
