"""Adding a host over SSH (IML's ``test_host`` and ``POST /api/host/`` with a root password
or private key): check access, install the agent, register it with a one-time token, start it.

Every command's rc/stdout/stderr is kept for the caller; the registration secret and the
credentials never appear in them or in the logs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shlex

import asyncssh

log = logging.getLogger("shepherd.ssh")
_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:@\s\[\]]+)"
                      r"(?::(?P<port>\d{1,5}))?\Z")
CONNECT_TIMEOUT = 15


class SshError(Exception):
    """SSH access or a remote command failed; the message says which and why."""


@dataclasses.dataclass(frozen=True)
class Target:
    user: str
    host: str
    port: int
    root_pw: str | None = None
    private_key: str | None = None
    private_key_passphrase: str | None = None


@dataclasses.dataclass
class Console:
    """What one remote command did (the step console of IML)."""

    command: str
    rc: int
    stdout: str
    stderr: str


def parse_target(address: str, root_pw: str | None, private_key: str | None,
                 passphrase: str | None) -> Target:
    """``[user@]host[:port]`` plus credentials; raises ValueError naming the problem."""
    match = _ADDRESS.match(address or "")
    if not match:
        raise ValueError("address must look like [user@]host[:port]")
    port = int(match["port"] or 22)
    if not 1 <= port <= 65535:
        raise ValueError("port must be between 1 and 65535")
    return Target(match["user"] or "root", match["host"].strip("[]"), port, root_pw or None,
                  private_key or None, passphrase or None)


async def _connect(target: Target) -> asyncssh.SSHClientConnection:
    options: dict = {"username": target.user, "port": target.port, "known_hosts": None,
                     "connect_timeout": CONNECT_TIMEOUT}
    if target.private_key:
        try:
            key = asyncssh.import_private_key(target.private_key, target.private_key_passphrase)
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise SshError(f"cannot read the private key: {exc}") from None
        options.update(client_keys=[key], password=None)
    else:
        options.update(password=target.root_pw, client_keys=None)
    try:
        return await asyncssh.connect(target.host, **options)
    except asyncssh.PermissionDenied:
        raise SshError(f"authentication to {target.user}@{target.host} failed") from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise SshError(f"cannot reach {target.host}:{target.port}: {exc}") from None


async def check_access(target: Target) -> list[dict]:
    """The checks of ``/api/test_host/``: reachable and authenticated, agent prerequisites."""
    try:
        conn = await _connect(target)
    except SshError as exc:
        auth_failed = "authentication" in str(exc)
        return [{"name": "reachable", "value": auth_failed, "detail": "" if auth_failed else str(exc)},
                {"name": "auth", "value": False, "detail": str(exc)}]
    async with conn:
        checks = [{"name": "reachable", "value": True, "detail": ""},
                  {"name": "auth", "value": True, "detail": ""}]
        for name, command in (("python3", "command -v python3"), ("hostname", "hostname -f")):
            result = await conn.run(command, check=False, timeout=CONNECT_TIMEOUT)
            checks.append({"name": name, "value": result.exit_status == 0,
                           "detail": str(result.stdout or result.stderr).strip()[:200]})
    return checks


async def install(target: Target, commands: list[str], secrets: list[str], timeout: float) -> list[Console]:
    """Run ``commands`` in order over one connection; stop at the first failure (SshError)."""
    consoles: list[Console] = []
    conn = await _connect(target)
    async with conn:
        for command in commands:
            try:
                result = await conn.run(command, check=False, timeout=timeout)
            except (asyncssh.Error, TimeoutError, OSError) as exc:
                raise SshError(f"{_redact(command, secrets)}: {exc}") from None
            console = Console(_redact(command, secrets), result.exit_status or 0,
                              _redact(str(result.stdout or ""), secrets),
                              _redact(str(result.stderr or ""), secrets))
            consoles.append(console)
            if result.exit_status != 0:
                detail = (console.stderr or console.stdout).strip().splitlines()[-1:] or [""]
                raise SshError(f"'{console.command}' failed on {target.host} with exit status "
                               f"{console.rc}: {detail[0][:300]}")
    return consoles


def register_command(agent_command: str, manager_url: str, secret: str, fingerprint: str) -> str:
    return (f"{agent_command} register --manager {shlex.quote(manager_url)} --token {secret} "
            f"--ca-sha256 {fingerprint}")


def onboarding_steps(install: str, agent_command: str, manager_url: str, secret: str,
                     fingerprint: str, start: str) -> list[str]:
    """Install the agent, register it, start it (empty steps left out) — the commands a
    registration token's register_command chains with ``&&`` and SSH onboarding runs."""
    steps = [install, register_command(agent_command, manager_url, secret, fingerprint), start]
    return [step for step in steps if step]


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "********")
    return text


async def wait_for(predicate, timeout: float, interval: float = 0.5) -> bool:
    """Poll an async predicate until true or the timeout passes."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval)
    return False
