"""``shepherd token create|list|cancel`` over ``/api/registration_token/``.

A registration token lets new machines register their agent: ``create`` prints the
``register_command`` the manager composes (manager URL, secret, CA fingerprint) to paste on
the new machine. The manager stops listing a token once it is cancelled, expired or spent.
"""

from __future__ import annotations

import datetime

import click

from api.cli.credentials import pass_client
from api.cli.durations import Duration
from api.cli.output import Column, age, emit, field, output_options, print_json
from api.client import Client

LIST = "/api/registration_token/"


def profile_name(token: dict) -> str:
    """``/api/server_profile/compute_node/`` → ``compute_node``."""
    return str(token.get("profile") or "").rstrip("/").rsplit("/", 1)[-1]


COLUMNS = [
    Column("ID", field("id")),
    Column("PROFILE", profile_name, shrink=True),
    Column("CREDITS", field("credits")),
    Column("EXPIRES", field("expiry"), when=True),
    Column("SECRET", field("secret"), wide=True),
    Column("REGISTER COMMAND", field("register_command"), wide=True),
]


@click.group()
def token() -> None:
    """Registration tokens: how new machines join the cluster.

    \b
    Example:
      $ shepherd token create --profile compute_node --credits 10 --expiry 2h
      $ shepherd token list
    """


@token.command("create")
@click.option("--profile", metavar="PROFILE",
              help="Server profile of the machines (default: the manager's default profile).")
@click.option("--credits", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many machines may register with it.")
@click.option("--expiry", type=Duration(), default="1h", show_default=True,
              help="How long it stays valid: 90s, 10m, 2h, 7d.")
@output_options
@pass_client
def token_create(client: Client, profile: str | None, credits: int,
                 expiry: datetime.timedelta, output: str) -> None:
    """Create a registration token and print the command to run on the new machine.

    The command goes to standard output and a summary to standard error, so
    `cmd=$(shepherd token create)` captures just the command.

    \b
    Example:
      $ shepherd token create --profile compute_node --credits 4 --expiry 30m
      Token 7 (compute_node): 4 credits, expires in 29m. On each new machine run:
      shepherd-agent register --manager https://mgr:8443 --token Q2x… --ca-sha256 0f3c…
    """
    until = datetime.datetime.now(datetime.UTC) + expiry
    created = client.post(LIST, {"profile": profile or default_profile(client), "credits": credits,
                                 "expiry": until.isoformat(timespec="seconds")})
    if output == "json":
        print_json(created)
        return
    plural = "" if created["credits"] == 1 else "s"
    click.echo(f"Token {created['id']} ({profile_name(created)}): {created['credits']} credit{plural}, "
               f"expires {age(created['expiry'])}. On each new machine run:", err=True)
    click.echo(created["register_command"])


@token.command("list")
@output_options
@pass_client
def token_list(client: Client, output: str) -> None:
    """List the usable registration tokens (not cancelled, expired or spent).

    \b
    Example:
      $ shepherd token list -o wide
      $ shepherd token list --json | jq -r '.[0].register_command'
    """
    emit(client.iter_objects(LIST), COLUMNS, output, "usable registration tokens")


@token.command("cancel")
@click.argument("token_ids", metavar="ID...", nargs=-1, required=True, type=int)
@pass_client
def token_cancel(client: Client, token_ids: tuple[int, ...]) -> None:
    """Cancel registration tokens so no more machines register with them.

    \b
    Example:
      $ shepherd token cancel 7
    """
    for token_id in token_ids:
        client.patch(f"{LIST}{token_id}/", {"cancelled": True})
        click.echo(f"Cancelled token {token_id}.")


def default_profile(client: Client) -> str:
    """The server profile the manager marks as its default."""
    profiles = client.get("/api/server_profile/", default="true", limit=1)
    if not profiles or not profiles.get("objects"):
        raise click.ClickException("the manager has no default server profile; pass --profile")
    return profiles["objects"][0]["name"]
