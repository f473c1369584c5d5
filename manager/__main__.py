"""``shepherd-manager``: serve the APIs, migrate the database, create users."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import click

from manager import __version__, logs
from manager import config as config_mod


def setting_options(*names: str) -> Any:
    """Click options generated from ``config.SETTINGS`` (all of them when no names are given)."""
    chosen = [s for s in config_mod.SETTINGS if not names or s.name in names]

    def decorate(fn: Any) -> Any:
        for s in reversed(chosen):
            flag = "--" + s.name.replace("_", "-")
            if isinstance(s.default, bool):
                flag = f"{flag}/--no-{flag[2:]}"
                fn = click.option(flag, s.name, default=None, help=s.help)(fn)
            else:
                kind = {int: int, float: float}.get(s.type, str)
                fn = click.option(flag, s.name, type=kind, default=None, help=s.help)(fn)
        return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                            help="TOML config file (overrides SHEPHERD_* variables).")(fn)
    return decorate


def load_config(config_file: str | None, **flags: Any) -> config_mod.Config:
    try:
        return config_mod.load(flags=flags, config_file=config_file)
    except config_mod.ConfigError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shepherd-manager")
def main() -> None:
    """The Shepherd manager: REST APIs for admins, a gRPC server for agents.

    \b
    Example:
      shepherd-manager create-user admin --superuser --password-stdin < pw.txt
      shepherd-manager serve --state-dir /var/lib/shepherd
    """


@main.command()
@setting_options()
def serve(config_file: str | None, **flags: Any) -> None:
    """Run the manager until SIGINT/SIGTERM; migrates the database first.

    \b
    Example:
      SHEPHERD_DATABASE_URL=postgresql://shepherd@db/shepherd shepherd-manager serve --port 443
    """
    cfg = load_config(config_file, **flags)
    logs.configure(cfg.log_level, cfg.log_format)
    asyncio.run(_serve(cfg))


async def _serve(cfg: config_mod.Config) -> None:
    from manager.server import Manager

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    manager = Manager(cfg)
    await manager.start()
    click.echo(f"shepherd-manager {__version__}: REST API on {manager.url}/api/ "
               f"(database {redact(cfg.resolved_database_url)})", err=True)
    await stop.wait()
    await manager.stop()


@main.command("migrate")
@setting_options("state_dir", "database_url")
def migrate_cmd(config_file: str | None, **flags: Any) -> None:
    """Apply pending database migrations (serve also does this at start).

    \b
    Example:
      shepherd-manager migrate --database-url postgresql://shepherd@db/shepherd
    """
    from manager.db.migrations import migrate

    database = _open(load_config(config_file, **flags))
    applied = migrate(database)
    click.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@main.command("create-user")
@setting_options("state_dir", "database_url")
@click.argument("username")
@click.option("--password", help="The password (visible in ps; prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--superuser", is_flag=True, help="Member of the superusers group.")
@click.option("--group", "groups", multiple=True,
              type=click.Choice(["superusers", "filesystem_administrators", "filesystem_users"]),
              help="Group to join (repeatable).")
def create_user(config_file: str | None, username: str, password: str | None,
                password_stdin: bool, superuser: bool, groups: tuple[str, ...], **flags: Any) -> None:
    """Create a user account.

    \b
    Example:
      echo 's3cret-pass' | shepherd-manager create-user alice --password-stdin --group filesystem_users
    """
    from manager.db.migrations import migrate
    from manager.domain import accounts
    from manager.domain.errors import ValidationError

    if (password is None) == (not password_stdin):
        raise click.UsageError("give exactly one of --password or --password-stdin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    wanted = list(groups) + (["superusers"] if superuser else [])
    database = _open(load_config(config_file, **flags))
    migrate(database)
    try:
        with database.connection_context():
            user = accounts.create_user(None, username, password, password, groups=wanted or
                                        ["filesystem_users"])
    except ValidationError as exc:
        raise click.ClickException("; ".join(f"{k}: {v}" for k, v in exc.errors.items())) from None
    click.echo(f"created user {user.username} (id {user.id})")


@main.command("check")
@setting_options("state_dir", "database_url", "agent_port")
def check_cmd(config_file: str | None, **flags: Any) -> None:
    """Check what /readyz checks: the database answers, its schema is current, the agent
    server listens on this machine. Exits 1 with the reasons when a check fails.

    \b
    Example:
      shepherd-manager check --config /etc/shepherd/manager.toml && echo ready
    """
    from manager.ops import health

    cfg = load_config(config_file, **flags)
    database = _open(cfg)
    try:
        checks = health.database_checks(database)
    finally:
        database.close()
    checks.append(health.port_check("agent_server", "127.0.0.1", cfg.agent_port))
    for c in checks:
        click.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name}{': ' + c.detail if c.detail else ''}")
    if not all(c.ok for c in checks):
        sys.exit(1)


def _open(cfg: config_mod.Config):
    from manager.db import base as dbbase
    from manager.files import ensure_private_dir

    if not cfg.database_url:
        ensure_private_dir(cfg.state_dir)
    database = dbbase.open_database(cfg.resolved_database_url)
    dbbase.bind(database)
    return database


def redact(url: str) -> str:
    """The URL without its password, for logs and messages."""
    from urllib.parse import urlparse

    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":****@", 1)
    return url


if __name__ == "__main__":
    main()
