"""``shepherd login``, ``logout`` and ``context list|use``: tokens kept per named context.

A context is one manager (URL and trusted CA) with the user and bearer token last logged in
there. ``login`` gets a token from ``/auth/token`` and makes its context the current one;
``logout`` revokes the token on the server before forgetting it.
"""

from __future__ import annotations

import os

import click

from api.cli import config, trust
from api.cli.credentials import Options, password_from_stdin
from api.cli.output import Column, emit, field, output_options
from api.client import Client, ShepherdError


@click.command()
@click.option("--url", metavar="URL", help="The manager, e.g. https://mgr.example.com:8443 "
              "(default: the context's URL, or SHEPHERD_URL).")
@click.option("-u", "--username", metavar="USER", help="Account to log in as (prompted if unset).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--ca-sha256", "expected", metavar="FP",
              help="Trust the manager's CA only if its SHA-256 fingerprint is FP.")
@click.option("-y", "--yes", is_flag=True, help="Trust the manager's CA without asking.")
@click.pass_obj
def login(options: Options, url: str | None, username: str | None, password_stdin: bool,
          expected: str | None, yes: bool) -> None:
    """Log in to a manager and keep the token in a named context.

    The first login to a URL shows the fingerprint of the manager's CA and asks before
    trusting it (like ssh); the token is kept in ~/.config/shepherd/config.toml (mode 0600)
    under the context named by --context (default: the current one, else "default"), which
    becomes the current context. --ca-file or --insecure given here are remembered there.

    \b
    Example:
      $ shepherd login --url https://mgr.example.com:8443 --username admin
      $ shepherd --context lab login --url https://lab:8443 -u admin --password-stdin \\
            --ca-sha256 0f3c…9a < password.txt
    """
    cfg = options.load()
    name = options.context_name(cfg)
    if not config.CONTEXT_NAME.match(name):
        raise click.BadParameter("letters, digits and . _ @ : - only", param_hint="--context")
    previous = cfg.contexts.get(name)
    url = _manager_url(url, previous)
    ca_file, insecure = trust.trusted_ca(url, previous, options.ca_file, options.insecure,
                                         expected, yes, may_prompt=not password_stdin)
    context = config.Context(url, ca_file=ca_file, insecure=insecure)
    context.username = username or click.prompt(
        "Username", default=previous.username if previous and previous.username else "admin", err=True)
    client = Client(url, verify=options.verify(context, url))
    client.login(context.username, _password(password_stdin))
    context.token = client.token or ""
    cfg.contexts[name], cfg.current = context, name
    config.save(cfg, options.path)
    click.echo(f"Logged in to {url} as {context.username} (context {name}).")


@click.command()
@click.pass_obj
def logout(options: Options) -> None:
    """Revoke the context's token on the manager and forget it here.

    The URL, user and trusted CA stay, so `shepherd login` asks only for the password.
    If the manager cannot be reached the token is kept (it still works until it expires)
    and the command fails; run it again later.

    \b
    Example:
      $ shepherd logout
      $ shepherd --context lab logout
    """
    cfg = options.load()
    name = options.context_name(cfg)
    context = cfg.contexts.get(name)
    if context is None or not context.token:
        click.echo(f"Not logged in (context {name}).")
        return
    note = ""
    try:
        Client(context.url, token=context.token, verify=options.verify(context, context.url)).logout()
    except ShepherdError as exc:
        if exc.status != 401:
            raise
        note = f" (the manager had already ended the token: {exc.message})"
    context.token = ""
    config.save(cfg, options.path)
    click.echo(f"Logged out of {context.url} (context {name}){note}.")


@click.group()
def context() -> None:
    """List the managers you have logged in to, and choose the current one.

    \b
    Example:
      $ shepherd context list
      $ shepherd context use lab
    """


CONTEXT_COLUMNS = [
    Column("CURRENT", lambda row: "*" if row["current"] else "", styles={"*": "bold green"}),
    Column("NAME", field("name")),
    Column("URL", field("url"), shrink=True),
    Column("USER", field("username")),
    Column("LOGGED IN", field("logged_in"), styles={"no": "red"}),
    Column("CA", field("ca"), wide=True),
]


@context.command("list")
@output_options
@click.pass_obj
def context_list(options: Options, output: str) -> None:
    """List the contexts (tokens are never shown; --json lists them without).

    \b
    Example:
      $ shepherd context list
      $ shepherd context list --json | jq -r '.[].url'
    """
    cfg = options.load()
    rows = [{"name": name, "current": name == cfg.current, "url": c.url,
             "username": c.username, "logged_in": bool(c.token),
             "ca": "insecure" if c.insecure else (c.ca_file or "system")}
            for name, c in sorted(cfg.contexts.items())]
    emit(rows, CONTEXT_COLUMNS, output, "contexts (log in with: shepherd login --url URL)")


@context.command("use")
@click.argument("name", shell_complete=lambda ctx, param, incomplete: context_names(incomplete))
@click.pass_obj
def context_use(options: Options, name: str) -> None:
    """Make NAME the current context.

    \b
    Example:
      $ shepherd context use lab
    """
    cfg = options.load()
    if name not in cfg.contexts:
        known = ", ".join(sorted(cfg.contexts)) or "none; log in first"
        raise click.BadParameter(f"no context {name!r} (known: {known})", param_hint="NAME")
    cfg.current = name
    config.save(cfg, options.path)
    click.echo(f"Current context: {name} ({cfg.contexts[name].url}).")


def context_names(incomplete: str) -> list[str]:
    """Shell completion of context names (nothing when the file cannot be read)."""
    try:
        names = config.load(config.config_path()).contexts
    except config.ConfigError:
        return []
    return [name for name in sorted(names) if name.startswith(incomplete)]


def _manager_url(url: str | None, previous: config.Context | None) -> str:
    """The URL given, else the context's, else asked for; ``https://`` when no scheme."""
    url = url or os.environ.get("SHEPHERD_URL") or (previous.url if previous else "")
    url = (url or click.prompt("Manager URL (https://HOST:PORT)", err=True)).strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    if not url.startswith(("https://", "http://")):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--url")
    return url


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return password_from_stdin()
    return click.prompt("Password", hide_input=True, err=True)
