"""Entry point of the ``shepherd`` command: global flags, the command tree, error handling.

The CLI speaks only the public REST APIs, through ``api.client``. Exit codes: 0 success,
1 an API, connection or local-file error (one line on stderr, the server's own message),
2 a usage error. An API or network failure never shows a Python traceback.
"""

from __future__ import annotations

from typing import Any

import click

from api import __version__
from api.cli import (
    alerts,
    audit,
    auth,
    commands,
    completion,
    hosts,
    jobs,
    nodes,
    power,
    tokens,
    users,
)
from api.cli.config import ConfigError
from api.cli.credentials import Options, login_command
from api.client import ShepherdError


class ShepherdGroup(click.Group):
    """Turns API and config errors raised anywhere below into click's one-line errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ShepherdError as exc:
            raise click.ClickException(api_failure(exc, ctx.obj)) from None
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


def api_failure(exc: ShepherdError, options: Options | None) -> str:
    """The server's message on one line; a 401 also says how to log in again."""
    message = " ".join(exc.message.split())
    if exc.status is None and message.startswith("TLS verification"):
        message += (" (shepherd login --url URL pins the manager's CA; --ca-file or "
                    "SHEPHERD_CA_FILE names another)")
    if exc.status == 401:
        command = login_command(options or Options())
        if "shepherd login" in message:  # the manager's own hint, made exact for --context
            message = message.replace("shepherd login", command)
        else:
            message = f"{message} Log in again: {command}"
    return message


@click.group(cls=ShepherdGroup, context_settings={"help_option_names": ["-h", "--help"],
                                                  "max_content_width": 100})
@click.version_option(__version__, prog_name="shepherd")
@click.option("--context", metavar="NAME", envvar="SHEPHERD_CONTEXT",
              shell_complete=lambda ctx, param, incomplete: auth.context_names(incomplete),
              help="Use this context instead of the current one [env SHEPHERD_CONTEXT].")
@click.option("--ca-file", metavar="PEM", envvar="SHEPHERD_CA_FILE",
              type=click.Path(exists=True, dir_okay=False),
              help="Verify the manager against these CAs instead of the pinned one "
                   "[env SHEPHERD_CA_FILE].")
@click.option("--insecure", is_flag=True, help="Do not verify the manager's certificate.")
@click.pass_context
def main(ctx: click.Context, context: str | None, ca_file: str | None, insecure: bool) -> None:
    """Shepherd's admin command line: users, registration tokens, hosts, commands, alerts, audit.

    Log in once with `shepherd login`; the token is kept in ~/.config/shepherd/config.toml
    under a named context. SHEPHERD_URL and SHEPHERD_TOKEN override the context's URL and
    token. Every command has --help with an example; lists take -o wide or --json.

    \b
    Example:
      $ shepherd login --url https://mgr.example.com:8443 --username admin
      $ shepherd token create --profile compute_node
      $ shepherd host list
    """
    ctx.obj = Options(context=context, ca_file=ca_file, insecure=insecure)


for _command in (auth.login, auth.logout, auth.context, users.user, tokens.token, hosts.host,
                 nodes.node, power.power, commands.command, jobs.job, alerts.alert, audit.audit,
                 completion.completion):
    main.add_command(_command)


if __name__ == "__main__":
    main(prog_name="shepherd")
