"""``shepherd-agent``: register this machine, run the agent, or ask whether it is connected.

Thin on purpose: each command parses flags, calls one module (registration, connection,
state) and turns its errors into a one-line message and an exit code. gRPC and the action
modules are imported inside the commands that need them, so `status` and `--version` stay
quick.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from agent import __version__
from agent.config import DEFAULT_STATE_DIR, ROLES, AgentConfig
from agent.simulator.command import simulate
from agent.state import StateDir, StateError

if TYPE_CHECKING:
    from agent.connection import AgentConnection
    from agent.runner import ActionRunner

log = logging.getLogger("agent")

EXIT_ERROR = 1
EXIT_NOT_CONNECTED = 3
EXIT_NOT_REGISTERED = 4

state_dir_option = click.option(
    "--state-dir", default=DEFAULT_STATE_DIR, show_default=True, metavar="DIR",
    type=click.Path(file_okay=False), help="Where the identity, agent.json, status.json and "
    "unacknowledged results live.")


def _fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    click.echo(f"shepherd-agent: {message}", err=True)
    sys.exit(code)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shepherd-agent")
def main() -> None:
    """The Shepherd agent, one per managed machine.

    \b
    Example:
      shepherd-agent register --manager https://mgr:8443 --token SECRET --ca-sha256 FP
      shepherd-agent run
      shepherd-agent status
    """


@main.command()
@click.option("--manager", required=True, metavar="URL",
              help="The manager's HTTPS URL, as in the registration command.")
@click.option("--token", required=True, envvar="SHEPHERD_AGENT_TOKEN", metavar="SECRET",
              help="The registration token's secret (or set SHEPHERD_AGENT_TOKEN).")
@click.option("--ca-sha256", required=True, metavar="FP",
              help="SHA-256 fingerprint of the manager's CA (hex; colons and case ignored).")
@click.option("--roles", default="compute", show_default=True, metavar="LIST",
              help=f"Comma-separated roles among: {', '.join(ROLES)}.")
@click.option("--fqdn", default=None, help="Name to register under (default: this "
              "machine's FQDN); it becomes the certificate's CN.")
@click.option("--force", is_flag=True, help="Replace an existing registration.")
@state_dir_option
def register(manager: str, token: str, ca_sha256: str, roles: str, fqdn: str | None,
             force: bool, state_dir: str) -> None:
    """Register this machine with the manager using a registration token.

    Generates a key (it never leaves this machine), pins the manager's CA by its
    fingerprint, and stores key, certificate and CA in the state directory (0600).

    \b
    Example:
      shepherd-agent register --manager https://mgr.example.com:8443 \\
          --token 6f1c0e... --ca-sha256 AB:CD:...:EF --roles storage,bmc
    """
    from agent.inventory import LocalMachine
    from agent.registration import RegistrationError
    from agent.registration import register as do_register

    role_list = _parse_roles(roles)
    state = StateDir(state_dir)
    if state.is_registered() and not force:
        _fail(f"already registered ({state_dir}/agent.json); use --force to replace it")
    try:
        record = do_register(manager, token, ca_sha256, role_list, LocalMachine(fqdn), state,
                             AgentConfig().connect_timeout_s)
    except RegistrationError as exc:
        _fail(str(exc))
    click.echo(f"registered {record.fqdn} as host {record.host_id} with {record.manager_url}")


def _parse_roles(roles: str) -> list[str]:
    chosen = [r.strip() for r in roles.split(",") if r.strip()]
    unknown = sorted(set(chosen) - set(ROLES))
    if not chosen or unknown:
        raise click.BadParameter(f"roles must be among {', '.join(ROLES)}; got {roles!r}",
                                 param_hint="--roles")
    return list(dict.fromkeys(chosen))


@main.command()
@state_dir_option
@click.option("--max-actions", type=click.IntRange(1, 1024), default=AgentConfig.max_actions,
              show_default=True,
              help="Actions run at once; further requests wait for a free slot.")
def run(state_dir: str, max_actions: int) -> None:
    """Run the agent: hold the stream to the manager and run its actions.

    Stops cleanly on SIGTERM/SIGINT. Reconnects with jittered backoff whenever the stream
    drops, and re-sends results the manager has not acknowledged. Writes status.json for
    `shepherd-agent status`.

    \b
    Example:
      shepherd-agent run --state-dir /var/lib/shepherd-agent --max-actions 4
    """
    _configure_logging()
    state = StateDir(state_dir)
    if not state.is_registered():
        _fail(f"not registered ({state_dir}): run `shepherd-agent register` first",
              EXIT_NOT_REGISTERED)
    try:
        lock = state.lock_for_run()
    except StateError as exc:
        _fail(str(exc))
    try:
        asyncio.run(_serve(state, AgentConfig(state_dir=state_dir, max_actions=max_actions)))
    except StateError as exc:
        _fail(str(exc))
    finally:
        os.close(lock)


async def _serve(state: StateDir, config: AgentConfig) -> None:
    """Hold the connection until SIGINT/SIGTERM, then interrupt running actions."""
    connection, runner = _build(state, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, stop, sig)
    try:
        await connection.run(stop)
    finally:
        await runner.close()
    log.info("stopped")


def _build(state: StateDir, config: AgentConfig) -> tuple[AgentConnection, ActionRunner]:
    """The real machine's connection and action runner, wired to ``state``."""
    from agent.actions import default_registry
    from agent.connection import AgentConnection, Status
    from agent.inventory import LocalMachine
    from agent.runner import ActionRunner

    record, identity = state.load_record(), state.load_identity()
    machine = LocalMachine(record.fqdn)
    runner = ActionRunner(default_registry(), machine, state.outbox, config.max_actions,
                          label=record.fqdn)

    def write_status(status: Status) -> None:
        state.write_status({"connected": status.connected, "since": _iso(status.since),
                            "last_error": status.last_error, "pid": os.getpid()})

    log.info("shepherd-agent %s: host %d, manager %s", __version__, record.host_id,
             record.agent_address)
    return AgentConnection(record.agent_address, identity, machine, record.roles, runner,
                           config, on_status=write_status), runner


def _stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s received: stopping", sig.name)
    stop.set()


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


@main.command()
@state_dir_option
def status(state_dir: str) -> None:
    """Say whether this machine is registered and connected.

    Connected means a live `shepherd-agent run` holds its stream (per status.json).

    Exit status: 0 registered and connected, 3 registered but not connected, 4 not
    registered.

    \b
    Example:
      shepherd-agent status --state-dir /var/lib/shepherd-agent && echo connected
    """
    state = StateDir(state_dir)
    if not state.is_registered():
        click.echo(f"not registered ({state_dir})")
        sys.exit(EXIT_NOT_REGISTERED)
    try:
        record = state.load_record()
    except StateError as exc:
        _fail(str(exc))
    click.echo(f"registered: host {record.host_id} ({record.fqdn}), roles "
               f"{','.join(record.roles)}")
    click.echo(f"manager: {record.manager_url} (agent service {record.agent_address})")
    connected, line = _run_status(state.read_status(), state.run_lock_held())
    click.echo(f"run: {line}")
    sys.exit(0 if connected else EXIT_NOT_CONNECTED)


def _run_status(status: dict[str, Any] | None, running: bool) -> tuple[bool, str]:
    """(connected, description) from status.json, checking that its writer is alive;
    ``running``: a ``run`` holds the state dir's lock."""
    if not status:
        if running:  # its last status write failed (a full disk) and removed the file
            return False, "running, connection unknown (status.json could not be written)"
        return False, "not running (no status recorded)"
    pid = status.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False, f"not running (last pid {pid})"
    if status.get("connected"):
        return True, f"connected since {status.get('since')} (pid {pid})"
    since, error = status.get("since"), status.get("last_error")
    return False, f"disconnected since {since} (pid {pid}): {error}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


main.add_command(simulate)

if __name__ == "__main__":
    main()
