"""Agent benchmark: a manager holding 1,000 / 5,000 / 10,000 simulated agents.

Prints: registration rate; the manager's CPU % and RSS while it holds the agents with
heartbeats every 10 s; action round trip p50/p99 when idle and with 1,000 actions in
flight; fan-out of one action to every agent (wall time until every result is stored).
Goals (issue 3): 10,000 agents under 50 % of one core; fan-out to 10,000 in under 10 s.

The manager runs in this process (its CPU is this process's, the driver here only waits);
the simulated agents run in ``shepherd-agent simulate`` subprocesses on the same machine,
and PostgreSQL in its own processes.

    .venv/bin/python -m tests.bench.agents [--stages 1000,5000,10000] [--window 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time

from manager.db.hosts import Action, Host
from tests.bench.harness import admin_client, wait_until
from tests.manager_process import RunningManager
from tests.pgcluster import ThrowawayPostgres


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024


def cpu_percent(window: float) -> float:
    """This process's CPU over ``window`` seconds, as % of one core."""
    start_cpu, start = time.process_time(), time.monotonic()
    time.sleep(window)
    return 100 * (time.process_time() - start_cpu) / (time.monotonic() - start)


class Simulators:
    def __init__(self, url: str, fingerprint: str, workdir: str) -> None:
        self.url, self.fingerprint, self.workdir = url, fingerprint, workdir
        self.procs: list[subprocess.Popen] = []

    def add(self, token: str, count: int, prefix: str) -> float:
        """Start ``count`` more agents; returns their registration rate (agents/s)."""
        log = open(os.path.join(self.workdir, f"{prefix}.log"), "w+")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "simulate", "--manager", self.url, "--token", token,
             "--ca-sha256", self.fingerprint, "--count", str(count), "--prefix", prefix, "-q"],
            stderr=log)
        self.procs.append(proc)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            log.seek(0)
            text = log.read()
            if "connected in" in text:
                return float(re.search(r"registered \d+ agents in [\d.]+ s \((\d+)/s\)", text)[1])
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited: {text[-2000:]}")
            time.sleep(0.5)
        raise TimeoutError("simulated agents did not connect in time")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def round_trips(m: RunningManager, host_ids: list[int], samples: int) -> list[float]:
    async def measure() -> list[float]:
        times = []
        for host_id in random.sample(host_ids, min(samples, len(host_ids))):
            start = time.perf_counter()
            outcome = await m.on_loop(m.dispatcher.dispatch(host_id, "agent.ping", {}, 30))
            if not outcome.ok:
                raise RuntimeError(f"ping failed: {outcome.error}")
            times.append(1000 * (time.perf_counter() - start))
        return times
    return asyncio.run(measure())


def completed(m: RunningManager) -> float:
    """Actions this manager finished so far (its own counter: no database load while timing)."""
    registry = m.manager.ctx.metrics.registry
    return sum(sample.value for family in registry.collect() for sample in family.samples
               if sample.name == "shepherd_actions_completed_total")


def fan_out(m: RunningManager, host_ids: list[int]) -> float:
    marker = f"bench-fanout-{time.time()}"
    before = completed(m)
    start = time.monotonic()
    asyncio.run(_submit(m, host_ids, "agent.ping", {}, 120, marker))
    wait_until(lambda: completed(m) - before >= len(host_ids), timeout=300, interval=0.1)
    wall = time.monotonic() - start
    failed = m.db(Action.select().where(Action.caused_by == marker, Action.state != "succeeded").count)
    if failed:
        print(f"    ({failed} of the fan-out's actions did not succeed)")
    return wall


async def _submit(m: RunningManager, host_ids, name, args, timeout, marker) -> list[str]:
    return await m.on_loop(m.dispatcher.submit_many(host_ids, name, args, timeout, marker))


def in_flight(m: RunningManager, host_ids: list[int], count: int) -> list[str]:
    return asyncio.run(_submit(m, host_ids[:count], "agent.sleep", {"seconds": 600}, 900, "bench-load"))


def cancel_all(m: RunningManager, action_ids: list[str]) -> None:
    async def cancel() -> None:
        for action_id in action_ids:
            await m.on_loop(m.dispatcher.cancel(action_id, "benchmark done"))
    asyncio.run(cancel())


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="1000,5000,10000")
    parser.add_argument("--window", type=float, default=30.0, help="CPU sampling seconds")
    parser.add_argument("--samples", type=int, default=200, help="round trips per measurement")
    args = parser.parse_args()
    stages = [int(s) for s in args.stages.split(",")]
    with ThrowawayPostgres() as pg, tempfile.TemporaryDirectory() as work:
        m = RunningManager(os.path.join(work, "state"), pg.create_database("bench"),
                           heartbeat_interval=10, contact_timeout=30, log_level="warning").start()
        sims = Simulators(m.url.replace("127.0.0.1", "localhost"), m.manager.ctx.ca.fingerprint, work)
        try:
            run(m, sims, stages, args)
        finally:
            sims.stop()
            m.stop()


def run(m: RunningManager, sims: Simulators, stages: list[int], args: argparse.Namespace) -> None:
    client = admin_client(m.url, m.config.state_dir)
    token = client.post("/api/registration_token/", {"profile": "compute_node",
                                                     "credits": max(stages), "expiry":
                                                     "2100-01-01T00:00:00+00:00"})["secret"]
    print(f"{'agents':>7} {'reg/s':>7} {'cpu %':>7} {'rss MB':>8} {'rtt p50':>8} {'rtt p99':>8}"
          f" {'busy p50':>9} {'busy p99':>9} {'fan-out s':>10}", flush=True)
    held = 0
    for i, target in enumerate(stages):
        rate = sims.add(token, target - held, f"s{i}n")
        held = target
        wait_until(lambda held=held: len(m.manager.ctx.sessions.sessions) >= held, timeout=120)
        host_ids = m.db(lambda: [h for (h,) in Host.select(Host.id).where(Host.state != "removed").tuples()])
        time.sleep(5)  # let the connect storm's tail settle
        cpu = cpu_percent(args.window)
        rss = rss_mb()
        idle = round_trips(m, host_ids, args.samples)
        load = in_flight(m, host_ids, min(1000, len(host_ids) // 2))
        busy = round_trips(m, host_ids[len(load):], args.samples)
        cancel_all(m, load)
        wall = fan_out(m, host_ids)
        print(f"{held:>7} {rate:>7.0f} {cpu:>7.1f} {rss:>8.0f} {pct(idle, 50):>8.1f} "
              f"{pct(idle, 99):>8.1f} {pct(busy, 50):>9.1f} {pct(busy, 99):>9.1f} {wall:>10.2f}",
              flush=True)


if __name__ == "__main__":
    main()
