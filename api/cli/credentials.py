"""Which manager a command talks to, with which token, trusting which CA.

Highest precedence first: the global flags (``--context``/``SHEPHERD_CONTEXT``,
``--ca-file``/``SHEPHERD_CA_FILE``, ``--insecure``), then ``SHEPHERD_URL`` and
``SHEPHERD_TOKEN``, then the chosen context of the contexts file (the current one unless
``--context`` names another). A context's token and pinned CA are used only for that
context's own URL: a token is never sent to a manager it was not issued by.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from api.cli import config
from api.client import Client


@dataclasses.dataclass
class Options:
    """The global flags, kept on click's context object for every subcommand."""

    context: str | None = None
    ca_file: str | None = None
    insecure: bool = False

    @property
    def path(self) -> Path:
        return config.config_path()

    def load(self) -> config.Config:
        return config.load(self.path)

    def context_name(self, cfg: config.Config) -> str:
        return self.context or cfg.current or "default"

    def verify(self, context: config.Context | None, url: str) -> bool | str:
        """``verify=`` for ``url``: flags first, then the context's pin for its own URL."""
        if self.insecure:
            return False
        if self.ca_file:
            return os.path.abspath(self.ca_file)
        if context is not None and context.url == url:
            return False if context.insecure else (context.ca_file or True)
        return True

    def client(self) -> Client:
        """A Client for the chosen manager and token; a one-line error when there is none."""
        cfg = self.load()
        name = self.context_name(cfg)
        context = cfg.contexts.get(name)
        url = os.environ.get("SHEPHERD_URL") or (context.url if context else "")
        own = context is not None and context.url == url  # never send a token to another URL
        token = os.environ.get("SHEPHERD_TOKEN") or (context.token if own else "")
        if self.context and context is None and not url:
            raise click.ClickException(f"no context named {name!r} (see: shepherd context list)")
        if not url or not token:
            where = f" to {url}" if url else ""
            hint = login_command(self, with_url=not url)
            raise click.ClickException(f"not logged in{where}; run: {hint}")
        return Client(url, token=token, verify=self.verify(context, url))


def login_command(options: Options, with_url: bool = False) -> str:
    """The command that logs this context in (again), to quote in error messages."""
    parts = ["shepherd"]
    if options.context:
        parts += ["--context", options.context]
    parts.append("login")
    if with_url:
        parts += ["--url", "https://MANAGER:8443"]
    return " ".join(parts)


def pass_client(command: Callable) -> Callable:
    """Give a command a logged-in ``Client`` as its first argument."""
    @click.pass_obj
    @functools.wraps(command)
    def wrapper(options: Options, *args: Any, **kwargs: Any) -> Any:
        return command(options.client(), *args, **kwargs)
    return wrapper


def password_from_stdin() -> str:
    """One line of standard input, for ``--password-stdin`` (a usage error when empty)."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.UsageError("--password-stdin: no password on standard input")
    return password
