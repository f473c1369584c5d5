"""Trusting a manager's CA on first login, the way ssh trusts a host key on first connection.

The manager signs its HTTPS certificate with its own CA and serves that CA, anonymously, at
``/certificate/``. On the first login to a URL the CLI fetches it without verification,
shows its SHA-256 fingerprint and asks before trusting it — or checks it against
``--ca-sha256`` (the value every ``register_command`` and the manager's ``/agent/`` endpoint
show), or trusts it on ``--yes``. The PEM is then stored beside the contexts file (0600)
and every later request verifies the server against it alone. ``--ca-file`` (a CA bundle of
your own, e.g. behind a TLS proxy) and ``--insecure`` skip the pinning.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from api.cli import config
from api.client import Client, ca_fingerprint


def trusted_ca(url: str, previous: config.Context | None, ca_file: str | None, insecure: bool,
               expected: str | None, assume_yes: bool, may_prompt: bool) -> tuple[str, bool]:
    """``(ca_file, insecure)`` to store in the context for ``url``; pins a CA when needed."""
    if insecure:
        return "", True
    if ca_file:
        return os.path.abspath(ca_file), False
    if url.startswith("http://"):
        return "", False
    if not expected and _still_trusted(previous, url):
        return previous.ca_file, previous.insecure
    return str(pin(url, expected, assume_yes, may_prompt)), False


def _still_trusted(previous: config.Context | None, url: str) -> bool:
    """Whether an earlier login to this very URL already settled which CA to trust."""
    if previous is None or previous.url != url:
        return False
    return previous.insecure or bool(previous.ca_file and os.path.exists(previous.ca_file))


def pin(url: str, expected: str | None, assume_yes: bool, may_prompt: bool) -> Path:
    """Fetch the manager's CA, have it confirmed, store it (0600) and return its path."""
    pem = Client(url).fetch_ca()
    try:
        fingerprint = ca_fingerprint(pem)
    except ValueError:
        raise click.ClickException(f"{url}/certificate/ did not return a PEM certificate") from None
    if expected:
        check(fingerprint, expected)
    elif not assume_yes:
        if not may_prompt:
            raise click.UsageError("the manager's CA is not trusted yet: with --password-stdin, "
                                   "pass --ca-sha256 FINGERPRINT (or --yes)")
        ask(url, fingerprint)
    path = config.config_dir() / f"ca-{fingerprint[:16]}.pem"
    try:
        config.write_private(path, pem)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    return path


def normalise(fingerprint: str) -> str:
    """Accept ``ab12…``, ``AB:12:…`` (openssl's form) or ``SHA256:ab12…``."""
    value = fingerprint.strip()
    if value.lower().startswith("sha256:"):
        value = value[7:]
    return value.replace(":", "").lower()


def check(fingerprint: str, expected: str) -> None:
    if normalise(expected) != fingerprint:
        raise click.ClickException(f"the manager's CA has fingerprint {fingerprint}, not "
                                   f"{normalise(expected)}: refusing to trust it")


def ask(url: str, fingerprint: str) -> None:
    """The ssh-style question; declining ends the login with nothing saved."""
    click.echo(f"The certificate authority of {url} is not known yet.", err=True)
    click.echo(f"Its SHA-256 fingerprint is {fingerprint}", err=True)
    click.echo("(the --ca-sha256 of the manager's register commands; on the manager: "
               "openssl x509 -in STATE_DIR/tls/ca.crt -noout -fingerprint -sha256)", err=True)
    if not click.confirm("Trust this CA?", default=False, err=True):
        raise click.ClickException("the CA was not trusted; nothing was saved")
