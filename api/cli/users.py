"""``shepherd user list|create|set-password|delete`` over ``/api/user/``.

Users are named by username on the command line (a numeric id works too); the API has no
username filter, so the CLI finds the user in the list.
"""

from __future__ import annotations

import click

from api.cli.credentials import pass_client, password_from_stdin
from api.cli.output import Column, emit, field, output_options, print_json
from api.client import Client

GROUPS = ("superusers", "filesystem_administrators", "filesystem_users")


def _group_names(user: dict) -> list[str]:
    return [g["name"] for g in user.get("groups") or []]


COLUMNS = [
    Column("USERNAME", field("username")),
    Column("NAME", field("full_name"), shrink=True),
    Column("EMAIL", field("email"), shrink=True),
    Column("GROUPS", _group_names, shrink=True),
    Column("ID", field("id"), wide=True),
    Column("SUPERUSER", field("is_superuser"), wide=True, styles={"yes": "bold"}),
]


@click.group()
def user() -> None:
    """Manage user accounts (superusers only, except changing your own password).

    \b
    Example:
      $ shepherd user create alice --group filesystem_administrators
      $ shepherd user list
    """


@user.command("list")
@output_options
@pass_client
def user_list(client: Client, output: str) -> None:
    """List the user accounts.

    \b
    Example:
      $ shepherd user list -o wide
      $ shepherd user list --json | jq -r '.[] | select(.is_superuser) | .username'
    """
    emit(client.iter_objects("/api/user/", order_by="username"), COLUMNS, output, "users")


@user.command("create")
@click.argument("username")
@click.option("--email", default="", help="E-mail address.")
@click.option("--first-name", default="", help="Given name.")
@click.option("--last-name", default="", help="Family name.")
@click.option("-g", "--group", "groups", multiple=True, type=click.Choice(GROUPS),
              help="Group to join (repeatable; default filesystem_users).")
@click.option("--superuser", is_flag=True, help="Same as --group superusers.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@output_options
@pass_client
def user_create(client: Client, username: str, email: str, first_name: str, last_name: str,
                groups: tuple[str, ...], superuser: bool, password_stdin: bool, output: str) -> None:
    """Create the account USERNAME (the password is prompted for twice unless --password-stdin).

    \b
    Example:
      $ shepherd user create alice --email alice@example.com --group filesystem_administrators
      $ shepherd user create ops --superuser --password-stdin < ops-password.txt
    """
    chosen = [*groups, "superusers"] if superuser else list(groups)
    password = new_password(password_stdin)
    created = client.post("/api/user/", {
        "username": username, "email": email, "first_name": first_name, "last_name": last_name,
        "groups": sorted(set(chosen or ["filesystem_users"])),
        "password1": password, "password2": password})
    if output == "json":
        print_json(created)
    else:
        click.echo(f"Created user {created['username']} (id {created['id']}).")


@user.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@pass_client
def user_set_password(client: Client, username: str, password_stdin: bool) -> None:
    """Set USERNAME's password; the user's other tokens and sessions end at once.

    \b
    Example:
      $ shepherd user set-password alice
      $ printf '%s\\n' "$NEW_PASSWORD" | shepherd user set-password alice --password-stdin
    """
    found = find_user(client, username)
    password = new_password(password_stdin)
    client.put(found["resource_uri"], {"new_password1": password, "new_password2": password})
    click.echo(f"Changed the password of {found['username']}.")


@user.command("delete")
@click.argument("username")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_client
def user_delete(client: Client, username: str, yes: bool) -> None:
    """Delete the account USERNAME; its tokens and sessions end at once.

    \b
    Example:
      $ shepherd user delete alice --yes
    """
    found = find_user(client, username)
    if not yes:
        click.confirm(f"Delete user {found['username']}?", abort=True, err=True)
    client.delete(found["resource_uri"])
    click.echo(f"Deleted user {found['username']}.")


def find_user(client: Client, name: str) -> dict:
    """The user named ``name`` (or with that id); a one-line error when there is none."""
    for candidate in client.iter_objects("/api/user/"):
        if candidate["username"] == name:
            return candidate
    if name.isascii() and name.isdigit():
        return client.get(f"/api/user/{name}/")
    raise click.ClickException(f"no user named {name!r}")


def new_password(from_stdin: bool) -> str:
    """A new password: one line of stdin, or typed twice without echo."""
    if from_stdin:
        return password_from_stdin()
    return click.prompt("New password", hide_input=True, confirmation_prompt=True, err=True)
