"""Fixtures for the ``shepherd`` CLI tests: the command run in-process (click's runner) or as
the installed console script, against this package's real manager (``package_manager``),
with its contexts file under a per-test ``XDG_CONFIG_HOME``; and real agents
(``shepherd-agent``) registered with that manager and, when a test needs a host set up,
running."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from api.cli.main import main
from api.client import Client
from tests.conftest import ADMIN_PASSWORD
from tests.manager_process import RunningManager, package_manager

SHEPHERD = str(Path(sys.executable).with_name("shepherd"))
AGENT = str(Path(sys.executable).with_name("shepherd-agent"))
manager = package_manager()

_ENVIRONMENT = ("SHEPHERD_URL", "SHEPHERD_TOKEN", "SHEPHERD_CONTEXT", "SHEPHERD_CA_FILE",
                "NO_COLOR", "FORCE_COLOR", "COLUMNS")


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$XDG_CONFIG_HOME/shepherd`` for this test, with no SHEPHERD_* variable leaking in."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in _ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "xdg" / "shepherd"


@pytest.fixture
def shepherd(config_dir: Path) -> Callable[..., Result]:
    """``shepherd("host", "list", input=...)``: run the CLI in-process.

    An exception other than click's own exit fails the test with its traceback, so a test
    passing proves no Python traceback reached the user.
    """
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        result = runner.invoke(main, list(args), input=input, env=env, catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result
    return run


@pytest.fixture
def shepherd_process(config_dir: Path) -> Callable[..., subprocess.CompletedProcess]:
    """The installed ``shepherd`` console script as a real process."""
    def run(*args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([SHEPHERD, *args], input=input, capture_output=True, text=True,
                              timeout=60, check=False, env={**os.environ, **(env or {})})
    return run


@pytest.fixture
def ca_sha256(accounts_reset: RunningManager) -> str:
    """The manager's CA fingerprint as its ``/agent/`` endpoint reports it."""
    return Client(accounts_reset.url, verify=accounts_reset.ca_path).get("/agent/")["ca_sha256"]


@pytest.fixture
def login(shepherd: Callable[..., Result], accounts_reset: RunningManager,
          ca_sha256: str) -> Callable[..., Result]:
    """``login(*extra)``: log in as admin non-interactively, pinning the CA by fingerprint."""
    def run(*extra: str, password: str = ADMIN_PASSWORD) -> Result:
        return shepherd(*extra, "login", "--url", accounts_reset.url, "--username", "admin",
                        "--password-stdin", "--ca-sha256", ca_sha256, input=password + "\n")
    return run


@pytest.fixture
def logged_in(login: Callable[..., Result], accounts_reset: RunningManager) -> RunningManager:
    result = login()
    assert result.exit_code == 0, result.output
    return accounts_reset


def register_with(command: str, manager_url: str, fqdn: str, state_dir: Path) -> None:
    """Run the pasted ``register_command`` with the real agent (``shepherd-agent register``).

    The test manager listens on loopback only, so ``--manager`` points at its loopback URL
    rather than at this machine's FQDN; the token and CA fingerprint are used as printed.
    """
    steps = command.split(" && ")
    assert steps[0] == "dnf -y install shepherd-agent"
    assert steps[2] == "systemctl enable --now shepherd-agent"
    args = shlex.split(steps[1])
    assert args[:2] == ["shepherd-agent", "register"]
    args[args.index("--manager") + 1] = manager_url
    result = subprocess.run([AGENT, *args[1:], "--fqdn", fqdn, "--state-dir", str(state_dir)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def register(shepherd: Callable[..., Result], logged_in: RunningManager,
             tmp_path: Path) -> Callable[..., dict]:
    """``register("n1.example")`` → the API's host: a real agent registered with a token
    from ``shepherd token create``, not running (its set-up waits for it)."""
    def run(fqdn: str, profile: str = "compute_node") -> dict:
        created = shepherd("token", "create", "--profile", profile)
        assert created.exit_code == 0, created.output
        register_with(created.stdout.strip(), logged_in.url, fqdn, tmp_path / fqdn)
        return json.loads(shepherd("host", "show", fqdn, "--json").stdout)
    return run


@pytest.fixture
def run_agent(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """``run_agent("n1.example", PATH=...)``: ``shepherd-agent run`` for a host registered
    by ``register``, with extra environment; stopped when the test ends."""
    running: list[subprocess.Popen] = []

    def start(fqdn: str, **env: str) -> subprocess.Popen:
        with open(tmp_path / f"{fqdn}.log", "ab") as log:
            proc = subprocess.Popen([AGENT, "run", "--state-dir", str(tmp_path / fqdn)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env={**os.environ, **env})
        running.append(proc)
        return proc
    yield start
    for proc in running:
        proc.terminate()
    for proc in running:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
