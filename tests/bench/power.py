"""Power benchmark: an IPMI sweep of N real BMCs, and N nodes powered on through the REST API.

Part 1, "IPMI sweep": one BMC agent's ``power.status`` action over N virtual BMCs speaking
real IPMI 2.0 over loopback UDP (``tests.power_peers.VirtualBmcs``: pyghmi's BMC server in
child processes), run with the agent's real drivers as tests/integration/test_power_drivers.py
runs them (no manager; at most 1,000 outlets per request, several requests at once beyond
that). Prints the wall time of a first sweep (every BMC logs in), of 3 more (sessions
reused), ok/failed outlets of each, then the wall time of a ``power.on`` of every BMC until
every entry reports ok and power "on" (the BMCs' own state checked for a sample of 20).
Goal: a 1,000-BMC sweep in under 10 s.

Part 2, "power-on through the API": a manager (in this process; SQLite or PostgreSQL) with
a few simulated BMC agents (``shepherd-agent simulate --roles bmc`` under a
``power_controller`` token: the real agent code over the real protocol, with simulated BMCs
that answer at once and need no socket), N nodes (``PATCH /api/node/``), one IPMI device
with one outlet per node. One ``POST /api/command/`` holds a ``PoweronNodeJob`` per node.
Prints the time to plan and store the command (the POST), the time until every outlet
reports ``has_power`` "On" (outlet list polled every 0.5 s), and the command's final state.
The manager's periodic outlet sweep is off, so that only the jobs write ``has_power``.

    .venv/bin/python -m tests.bench.power [--bmcs 1000] [--part ipmi|api|both]
        [--bmc-agents 2] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any

from agent.actions import ActionContext, default_registry
from api.client import Client
from manager.domain.inventory import power_jobs
from tests.bench.harness import admin_client
from tests.manager_process import RunningManager
from tests.pgcluster import ThrowawayPostgres
from tests.power_peers import VirtualBmcs
from tests.unit.agent.factories import FakeMachine, make_request

SECRET = "Bmc-s3cret-4711"
PER_REQUEST = 1000          # outlets per power action (the agent's limit)
OUTLET_TIMEOUT = 10         # seconds per outlet
SWEEPS_REUSED = 3
SAMPLE = 20                 # BMCs whose own state confirms the power-on
POWER_ON_ROUNDS = 3         # power.on requests for outlets not yet on, at most
POLL_INTERVAL = 0.5
API_TIMEOUT = 600.0         # seconds part 2 waits for the outlets
OUTLETS = "/api/power_control_device_outlet/"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --- part 1: the agent's power actions against virtual IPMI BMCs ---------------------------

def ipmi_outlet(n: int, port: int) -> dict[str, Any]:
    return {"id": n, "driver": "ipmi", "address": "127.0.0.1", "port": port,
            "username": "admin", "password": SECRET}


async def _execute(name: str, outlets: list[dict[str, Any]], args: dict[str, Any],
                   action_id: str) -> list[dict[str, Any]]:
    """One power action request, as the agent runs it; its outlet entries."""
    request = make_request(action_id=action_id, name=name, args={"outlets": outlets, **args})
    ctx = ActionContext(request.action_id, None, FakeMachine(), lambda line: None)
    result = await default_registry().execute(request, ctx)
    if not result.success:
        raise RuntimeError(f"{name} failed: {result.error}")
    return json.loads(result.result_json)["outlets"]


def act(name: str, outlets: list[dict[str, Any]], **args: Any) -> list[dict[str, Any]]:
    """Run ``name`` on every outlet: requests of at most ``PER_REQUEST`` outlets, at once."""
    chunks = [outlets[i:i + PER_REQUEST] for i in range(0, len(outlets), PER_REQUEST)]

    async def run_all() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(*(_execute(name, chunk, args, f"bench-{name}-{i}")
                                      for i, chunk in enumerate(chunks)))
    return [entry for entries in asyncio.run(run_all()) for entry in entries]


def timed(name: str, outlets: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    start = time.monotonic()
    entries = act(name, outlets, timeout=OUTLET_TIMEOUT)
    return time.monotonic() - start, entries


def first_error(entries: list[dict[str, Any]]) -> str:
    errors = [e["error"] for e in entries if not e["ok"]]
    return f" (first error: {errors[0]})" if errors else ""


def sweep_line(label: str, wall: float, entries: list[dict[str, Any]]) -> str:
    ok = sum(1 for e in entries if e["ok"])
    return (f"  {label}: {wall:6.2f} s, {ok} ok, {len(entries) - ok} failed"
            f"{first_error(entries)}")


def power_on_all(outlets: list[dict[str, Any]]) -> tuple[float, int, list[dict[str, Any]]]:
    """``power.on`` until every outlet reports ok and "on" (at most ``POWER_ON_ROUNDS``
    requests per outlet); wall time, rounds, and the outlets' last entries."""
    last: dict[int, dict[str, Any]] = {}
    pending = outlets
    start, rounds = time.monotonic(), 0
    while pending and rounds < POWER_ON_ROUNDS:
        rounds += 1
        for entry in act("power.on", pending, timeout=OUTLET_TIMEOUT):
            last[entry["id"]] = entry
        pending = [o for o in outlets if not (last[o["id"]]["ok"]
                                              and last[o["id"]]["power"] == "on")]
    return time.monotonic() - start, rounds, [last[o["id"]] for o in outlets]


def ipmi_part(count: int) -> None:
    print(f"Part 1 - IPMI sweep: one agent's power.status over {count} virtual BMCs "
          f"(real IPMI on loopback UDP; {OUTLET_TIMEOUT} s per outlet; requests of at most "
          f"{PER_REQUEST} outlets)", flush=True)
    start = time.monotonic()
    with VirtualBmcs(count=count, password=SECRET) as bmcs:
        print(f"  {count} virtual BMCs up in {time.monotonic() - start:.1f} s "
              f"({len(bmcs.procs)} processes)", flush=True)
        outlets = [ipmi_outlet(n, port) for n, port in enumerate(bmcs.ports)]
        wall, entries = timed("power.status", outlets)
        print(sweep_line("sweep 1 (with logins)", wall, entries)
              + "   goal: 1,000-BMC sweep < 10 s", flush=True)
        for sweep in range(2, SWEEPS_REUSED + 2):
            wall, entries = timed("power.status", outlets)
            print(sweep_line(f"sweep {sweep} (sessions reused)", wall, entries), flush=True)

        wall, rounds, entries = power_on_all(outlets)
        on = sum(1 for e in entries if e["ok"] and e["power"] == "on")
        print(f"  power.on of all {count}: {wall:6.2f} s until {on}/{count} report ok and "
              f"power on ({rounds} request round{'s' if rounds > 1 else ''})"
              f"{first_error(entries)}", flush=True)
        sample = random.Random(1).sample(range(count), min(SAMPLE, count))
        confirmed = sum(1 for i in sample if bmcs.get(i)["power"] == "on")
        print(f"  confirmed by the BMCs themselves: {confirmed}/{len(sample)} sampled BMCs "
              "are on", flush=True)


# --- part 2: nodes powered on through the manager's REST API -------------------------------

class BmcAgents:
    """``shepherd-agent simulate --roles bmc``: ``count`` BMC agents in one process."""

    def __init__(self, m: RunningManager, token: str, count: int, workdir: str) -> None:
        self.count = count
        self.log_path = os.path.join(workdir, "bmc-agents.log")
        self.log = open(self.log_path, "w+")  # noqa: SIM115 - lives with the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "simulate", "--manager", m.url, "--token", token,
             "--ca-sha256", m.manager.ctx.ca.fingerprint, "--count", str(count),
             "--roles", "bmc", "--prefix", "bmc", "-q"], cwd=ROOT, stderr=self.log)

    def wait_ready(self, admin: Client, timeout: float = 120.0) -> list[int]:
        """The BMC hosts' ids, once every one is connected and working."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the BMC agents exited: {self.log.read()[-2000:]}")
            ready = [h["id"] for h in admin.get("/api/host/", limit=0)["objects"]
                     if h["connected"] and h["state"] == "working"]
            if len(ready) >= self.count:
                return ready
            time.sleep(0.2)
        raise TimeoutError("the BMC agents did not connect and set up in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def xname(n: int) -> str:
    return f"x{1000 + n // 512}c{n // 64 % 8}s{n % 64}b0n0"


def bmc_address(n: int) -> str:
    return f"10.{100 + n // 65536}.{n // 256 % 256}.{n % 256}"


def create_nodes(admin: Client, count: int) -> list[int]:
    """``count`` nodes in one bulk PATCH; their ids in xname order."""
    saved = admin.patch("/api/node/", {"objects": [{"xname": xname(n), "role": "Compute"}
                                                   for n in range(count)]})
    if saved["created"] != count:
        raise RuntimeError(f"PATCH /api/node/ created {saved['created']} of {count} nodes")
    return [int(uri.rstrip("/").rsplit("/", 1)[1]) for uri in saved["objects"]]


def ipmi_type_uri(admin: Client) -> str:
    """The built-in IPMI type (fence_ipmilan: the agent's ``ipmi`` driver)."""
    for t in admin.get("/api/power_control_type/", limit=0)["objects"]:
        if t["agent"] == "fence_ipmilan":
            return t["resource_uri"]
    raise RuntimeError("no power control type with agent fence_ipmilan")


def create_outlets(admin: Client, node_ids: list[int]) -> list[int]:
    """One IPMI device per node, created with its outlet linked to the node (the outlet's
    ``node`` field); the outlets' ids."""
    type_uri = ipmi_type_uri(admin)
    outlet_ids = []
    for n, node_id in enumerate(node_ids):
        device = admin.post("/api/power_control_device/", {
            "device_type": type_uri, "name": f"bmc-{xname(n)}", "address": bmc_address(n),
            "username": "admin", "password": SECRET,
            "outlets": [{"identifier": "", "node": f"/api/node/{node_id}/"}]})
        outlet_ids.append(device["outlets"][0]["id"])
    return outlet_ids


def outlets_linked(admin: Client, node_ids: list[int], outlet_ids: list[int]) -> int:
    """How many of the nodes name their outlet (``Node.outlet``, set through the outlet)."""
    wanted = {f"/api/node/{n}/": f"{OUTLETS}{o}/" for n, o in zip(node_ids, outlet_ids,
                                                                   strict=True)}
    return sum(1 for node in admin.get("/api/node/", limit=0)["objects"]
               if wanted.get(node["resource_uri"]) == node["outlet"])


def outlets_on(admin: Client, outlet_ids: set[int]) -> int:
    return sum(1 for o in admin.get(OUTLETS, limit=0)["objects"]
               if o["id"] in outlet_ids and o["has_power"] == "On")


def wait_all_on(admin: Client, outlet_ids: set[int], command_uri: str,
                start: float) -> tuple[float | None, float | None, int]:
    """Poll the outlets every ``POLL_INTERVAL`` s until the command completes (at most
    ``API_TIMEOUT`` s): seconds from ``start`` until all outlets were On (None: never),
    until the command was seen complete (None: not in time), and the outlets On at the end."""
    all_on = complete = None
    on = 0
    while time.monotonic() - start < API_TIMEOUT:
        on = outlets_on(admin, outlet_ids)
        if on == len(outlet_ids) and all_on is None:
            all_on = time.monotonic() - start
        if admin.get(command_uri)["complete"]:
            complete = time.monotonic() - start
            on = outlets_on(admin, outlet_ids)       # what the last jobs recorded
            if on == len(outlet_ids) and all_on is None:
                all_on = time.monotonic() - start
            break
        time.sleep(POLL_INTERVAL)
    return all_on, complete, on


def failed_steps(admin: Client, command: dict[str, Any], shown: int = 3) -> list[str]:
    """The logs of the first ``shown`` failed steps of the command's jobs."""
    found = []
    for job_uri in command["jobs"]:
        job = admin.get(job_uri)
        if not (job["errored"] or job["cancelled"]):
            continue
        for step_uri in job["steps"] or []:
            step = admin.get(step_uri)
            if step["state"] != "success":
                found.append(f"{job['description']}: {step['class_name']} {step['state']}: "
                             f"{step.get('log', '').strip()[:500]}")
        if len(found) >= shown:
            break
    return found[:shown]


def power_on_through_api(admin: Client, node_ids: list[int], outlet_ids: list[int]) -> None:
    jobs = [{"class_name": "PoweronNodeJob", "args": {"node_id": i}} for i in node_ids]
    start = time.monotonic()
    command = admin.post("/api/command/", {"message": f"Power on {len(jobs)} nodes",
                                           "jobs": jobs})
    post = time.monotonic() - start
    print(f"  POST /api/command/ ({len(jobs)} PoweronNodeJob): {post * 1000:.0f} ms to plan "
          "and store the command", flush=True)
    all_on, complete, on = wait_all_on(admin, set(outlet_ids), command["resource_uri"], start)
    if all_on is None:
        print(f"  NOT all outlets On: {on}/{len(outlet_ids)} On after "
              f"{time.monotonic() - start:.1f} s", flush=True)
    else:
        print(f"  all {len(outlet_ids)} outlets report has_power On: {all_on:.1f} s after the "
              f"POST   ({len(outlet_ids) / all_on:.0f} nodes/s)", flush=True)
    done = admin.get(command["resource_uri"])
    print(f"  command {done['id']}: complete={done['complete']} errored={done['errored']} "
          f"cancelled={done['cancelled']}"
          + (f", complete {complete:.1f} s after the POST" if complete is not None else ""),
          flush=True)
    if done["errored"] or done["cancelled"]:
        for line in failed_steps(admin, done):
            print(f"    failed: {line}", flush=True)


def api_part(count: int, agents: int, database: str, work: str,
             pg: ThrowawayPostgres | None) -> None:
    print(f"Part 2 - power-on through the API: {count} nodes, {agents} simulated BMC "
          f"agent{'s' if agents > 1 else ''}, {database}", flush=True)
    url = (f"sqlite:///{work}/shepherd.db" if pg is None
           else pg.create_database("bench_power"))
    m = RunningManager(os.path.join(work, "state"), url, contact_timeout=60,
                       heartbeat_interval=10, power_poll_interval=0,
                       log_level="warning").start()
    bmc_agents = None
    try:
        admin = admin_client(m.url, m.config.state_dir)
        token = admin.post("/api/registration_token/", {"profile": "power_controller",
                                                        "credits": agents})
        bmc_agents = BmcAgents(m, token["secret"], agents, work)
        bmc_hosts = bmc_agents.wait_ready(admin)
        print(f"  BMC agents connected and working: hosts {bmc_hosts}", flush=True)

        start = time.monotonic()
        node_ids = create_nodes(admin, count)
        print(f"  PATCH /api/node/ of {count} nodes: {time.monotonic() - start:.2f} s",
              flush=True)
        start = time.monotonic()
        outlet_ids = create_outlets(admin, node_ids)
        linked = outlets_linked(admin, node_ids, outlet_ids)
        print(f"  {count} IPMI devices with one outlet each (one POST per device): "
              f"{time.monotonic() - start:.1f} s; {linked}/{count} nodes name their outlet",
              flush=True)
        # power jobs are offered for nodes with an outlet, a set the manager caches 2 s
        time.sleep(power_jobs.AVAILABLE_TTL + 0.5)
        power_on_through_api(admin, node_ids, outlet_ids)
    except Exception:  # noqa: BLE001 - reported, and the manager stopped all the same
        print("  PART 2 FAILED - the manager side did not do what was asked:", flush=True)
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
    finally:
        if bmc_agents is not None:
            bmc_agents.stop()
        m.stop()


# --- driver ----------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bmcs", type=int, default=1000, help="BMCs (part 1) and nodes "
                        "(part 2)")
    parser.add_argument("--part", choices=("ipmi", "api", "both"), default="both")
    parser.add_argument("--bmc-agents", type=int, default=2, help="simulated BMC agents "
                        "(part 2)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the manager's database (part 2)")
    args = parser.parse_args()
    if args.part in ("ipmi", "both"):
        ipmi_part(args.bmcs)
    if args.part in ("api", "both"):
        with tempfile.TemporaryDirectory() as work:
            if args.database == "postgresql":
                with ThrowawayPostgres() as pg:
                    api_part(args.bmcs, args.bmc_agents, args.database, work, pg)
            else:
                api_part(args.bmcs, args.bmc_agents, args.database, work, None)


if __name__ == "__main__":
    main()
