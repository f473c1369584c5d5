"""``shepherd-agent simulate``: run N simulated agents against a manager until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import warnings

import click
import grpc
import requests
from urllib3.exceptions import InsecureRequestWarning

from agent.config import ROLES, AgentConfig

log = logging.getLogger("agent.simulator")


@click.command()
@click.option("--manager", required=True, metavar="URL", help="The manager's HTTPS URL.")
@click.option("--token", envvar="SHEPHERD_AGENT_TOKEN", metavar="SECRET",
              help="Registration token with at least COUNT credits (not needed when the "
              "state dir already holds a registered fleet).")
@click.option("--count", type=click.IntRange(1, 100_000), required=True, help="How many agents.")
@click.option("--ca-sha256", metavar="FP", help="Pin the manager's CA (recommended); without "
              "it the CA is trusted on first use and its fingerprint printed.")
@click.option("--roles", default="compute", show_default=True,
              help=f"Comma-separated roles among: {', '.join(ROLES)}.")
@click.option("--prefix", default="sim", show_default=True, help="Host name prefix.")
@click.option("--domain", default="sim.shepherd", show_default=True, help="Host name domain.")
@click.option("--state-dir", type=click.Path(file_okay=False),
              help="Keep the fleet's identities here (fleet.json) to restart without a token.")
@click.option("--duration", type=float, help="Stop after this many seconds (default: run "
              "until SIGINT/SIGTERM).")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings only.")
def simulate(manager: str, token: str | None, count: int, ca_sha256: str | None, roles: str,
             prefix: str, domain: str, state_dir: str | None, duration: float | None,
             quiet: bool) -> None:
    """Run COUNT simulated agents in this process over the real protocol.

    Each agent has its own key and certificate and answers actions from a simulated
    hardware model. Prints one line when all are connected.

    \b
    Example:
      shepherd-agent simulate --manager https://mgr:8443 --token SECRET --count 1000 \\
          --ca-sha256 FP --state-dir /tmp/fleet
    """
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    role_list = [r.strip() for r in roles.split(",") if r.strip()]
    if not role_list or set(role_list) - set(ROLES):
        raise click.BadParameter(f"roles must be among {', '.join(ROLES)}", param_hint="--roles")
    try:
        asyncio.run(_simulate(manager, token, count, ca_sha256, role_list, prefix, domain,
                              state_dir, duration))
    except SimulationError as exc:
        click.echo(f"shepherd-agent simulate: {exc}", err=True)
        sys.exit(1)


class SimulationError(Exception):
    pass


async def _simulate(manager: str, token: str | None, count: int, ca_sha256: str | None,
                    roles: list[str], prefix: str, domain: str, state_dir: str | None,
                    duration: float | None) -> None:
    from agent.registration import RegistrationError
    from agent.simulator.fleet import Fleet, saved_path

    try:
        ca_pem, agent_address, registration_address = await asyncio.to_thread(
            discover, manager, ca_sha256)
    except (RegistrationError, requests.RequestException) as exc:
        raise SimulationError(str(exc)) from None
    fleet = Fleet(agent_address, registration_address, ca_pem, roles,
                  AgentConfig(state_dir=state_dir or "/nonexistent"))
    path = saved_path(state_dir) if state_dir else None
    if path and os.path.exists(path):
        fleet.load(path)
        click.echo(f"loaded {len(fleet.agents)} registered agents from {path}", err=True)
    if len(fleet.agents) < count:
        if not token:
            raise SimulationError("--token is required to register new agents")
        try:
            seconds = await fleet.register(token, count - len(fleet.agents), prefix, domain)
        except grpc.aio.AioRpcError as exc:
            raise SimulationError(f"registration failed: {exc.code().name}: {exc.details()}") \
                from None
        click.echo(f"registered {count} agents in {seconds:.1f} s "
                   f"({count / max(seconds, 1e-9):.0f}/s)", err=True)
        if path:
            os.makedirs(state_dir, mode=0o700, exist_ok=True)
            fleet.save(path)
    fleet.agents = fleet.agents[:count]
    gc.freeze()  # thousands of long-lived objects: keep them out of every GC pass
    seconds = await fleet.connect()
    click.echo(f"{fleet.connected_count()} of {count} agents connected in {seconds:.1f} s",
               err=True)
    await _wait_for_stop(duration)
    await fleet.stop()


def discover(manager: str, ca_sha256: str | None) -> tuple[bytes, str, str]:
    """The manager's CA (pinned if a fingerprint is given) and its two agent endpoints."""
    from agent import identity
    from agent.registration import _base_url, _grpc_target, agent_ports, fetch_pinned_ca

    base = _base_url(manager)
    session = requests.Session()
    session.trust_env = False
    if ca_sha256:
        ca_pem = fetch_pinned_ca(session, base, ca_sha256, 10)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            response = session.get(f"{base}/certificate/", verify=False, timeout=10)
        response.raise_for_status()
        ca_pem = response.content
        log.warning("trusting the manager's CA on first use: sha256 %s",
                    identity.ca_fingerprint(ca_pem))
    agent_port, registration_port = agent_ports(session, base, ca_pem, 10)
    return ca_pem, _grpc_target(base, agent_port), _grpc_target(base, registration_port)


async def _wait_for_stop(duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
