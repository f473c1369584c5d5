"""Engine benchmark: host set-up at scale, one command of 1,000 jobs × 10 steps, host lists.

Prints, for a manager on SQLite or PostgreSQL:
  - set-up of 110 newly registered hosts (their "Set up host" commands: 4 steps each);
  - one command of 1,000 jobs of 10 steps each over 100 of those hosts (the issue's
    scenario, 110 agents connected): planning time (the POST), wall time until complete,
    steps per second, the engine's own time per step (p50/p99 of the transaction that
    records a step's outcome and starts the next), and the manager's CPU seconds;
  - set-up of 890 more hosts, then ``GET /api/host/?limit=0`` of all 1,000 with available
    transitions/jobs and locks;
  - the same command again with all 1,000 agents connected and heartbeating (a heavier
    case than the issue's: the same 2 cores also carry 1,000 agents' traffic).
Goals (issue 11): plan < 1 s; overhead < 2 ms per step; host list < 200 ms.

The benchmark's job class ("BenchJob") is declared here, in the manager's own registry: 9
``agent.ping`` steps and one manager-side step. Each job write-locks its host and read-locks
one of 10 shared hosts (as target jobs read-lock their server's LNet): 10 jobs per host,
serialised by their write locks, many readers of each shared object, which never wait for
one another. (Reading a neighbour that other jobs of the command write would chain every
job behind the one before it: a plan of 1,000 sequential jobs, not a benchmark.) The manager runs in this process (its CPU is this
process's; the driver only waits); the agents run in ``shepherd-agent simulate``.

    .venv/bin/python -m tests.bench.engine [--database sqlite|postgresql] [--hosts 1000]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile
import time
from typing import Any

from manager.db.engine import Command, Job
from manager.db.hosts import Host
from manager.engine import registry
from manager.engine.planning import Requirement
from manager.engine.registry import JobClass, StepSpec
from tests.bench.agents import Simulators
from tests.bench.harness import admin_client, wait_until
from tests.manager_process import RunningManager
from tests.pgcluster import ThrowawayPostgres

STEPS = 10


def _bench_record(args: dict[str, Any], results: list[Any]) -> dict[str, Any]:
    return {"pings": len(results)}


def _neighbour(args: dict[str, Any]) -> list[Requirement]:
    return [Requirement(("host", args["neighbour"]), ("working",), "working")]


def declare_bench_job() -> None:
    if "BenchJob" in registry.default.jobs:
        return
    ping = StepSpec("PingStep", "agent.ping", action="agent.ping", args=lambda a: {"echo": "x"})
    record = StepSpec("RecordStep", "manager side", function=_bench_record)
    registry.default.add_job(JobClass(
        "BenchJob", "host", "Benchmark {label}", steps=lambda a: [ping] * (STEPS - 1) + [record],
        verb="Benchmark", available=lambda host: host.state == "working", requires=_neighbour))


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def timed_get(client: Any, path: str, runs: int = 10) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(path)
        times.append(1000 * (time.perf_counter() - start))
    return times


def _failure_reasons() -> list[tuple[str, int]]:
    """Why set-up jobs failed, most common first (a benchmark that hides failures lies)."""
    logs = collections.Counter(
        log.strip().splitlines()[-1][:160] if log.strip() else "(no log)"
        for (log,) in Job.select(Job.log).where(Job.errored | Job.cancelled).tuples())
    return logs.most_common(5)


WORK_HOSTS = 100   # the hosts the command's jobs run on (issue 11: "across 100 hosts")
SHARED_HOSTS = 10  # read-locked by the jobs (the first 10 of the other hosts)


def run(database: str, hosts: int, work: str, pg: ThrowawayPostgres | None) -> None:
    declare_bench_job()
    url = (f"sqlite:///{work}/shepherd.db" if pg is None else pg.create_database("bench_engine"))
    m = RunningManager(os.path.join(work, "state"), url, contact_timeout=60,
                       heartbeat_interval=10).start()
    sims = Simulators(m.url, m.manager.ctx.ca.fingerprint, work)
    try:
        admin = admin_client(m.url, m.config.state_dir)
        token = admin.post("/api/registration_token/", {  # (the default 60 s can run out)
            "profile": "compute_node", "credits": hosts, "expiry": "2100-01-01T00:00:00+00:00"})
        # the scenario first: the command over 100 hosts, only they connected
        first = set_up(m, sims, token["secret"], WORK_HOSTS + SHARED_HOSTS, "work", database)
        ids = first[:WORK_HOSTS]
        run_command(m, admin, ids, first[WORK_HOSTS:], database,
                    f"{len(first)} agents connected")
        set_up(m, sims, token["secret"], hosts - len(first), "idle", database)
        listing = timed_get(admin, "/api/host/?limit=0")
        print(f"[{database}] GET /api/host/?limit=0 of {hosts} hosts with transitions: "
              f"p50 {statistics.median(listing):.0f} ms, max {max(listing):.0f} ms")
        # the same command again while every agent is connected and heartbeating
        run_command(m, admin, ids, first[WORK_HOSTS:], database, f"{hosts} agents connected")
    finally:
        sims.stop()
        m.stop()
        if pg is not None:
            _print_deadlocks(pg.log_path)


def set_up(m: RunningManager, sims: Simulators, secret: str, count: int, prefix: str,
           database: str) -> list[int]:
    """Register ``count`` more simulated agents and wait for their set-up; their host ids."""
    before = m.db(Command.select().where(Command.complete == True).count)
    start = time.monotonic()
    sims.add(secret, count, prefix)
    wait_until(lambda: m.db(Command.select().where(Command.complete == True).count)
               >= before + count, timeout=600, interval=0.5)
    setup = time.monotonic() - start
    bad = m.db(Command.select().where(Command.errored | Command.cancelled).count)
    print(f"[{database}] set-up of {count} registered hosts (register + 2 jobs, 4 steps "
          f"each): {setup:.1f} s ({4 * count / setup:.0f} steps/s; {bad} failed so far)")
    for reason, times in m.db(_failure_reasons):
        print(f"    {times} × {reason}")
    return m.db(lambda: [h for (h,) in Host.select(Host.id).where(Host.fqdn.startswith(prefix))
                         .order_by(Host.id).tuples()])


def run_command(m: RunningManager, admin: Any, ids: list[int], shared: list[int],
                database: str, label: str) -> None:
    """Plan and run one command of 1,000 jobs × ``STEPS`` steps over ``ids``."""
    jobs = [{"class_name": "BenchJob", "args": {"host_id": ids[n % len(ids)],
                                                "neighbour": shared[n % len(shared)]}}
            for n in range(1000)]
    body = {"message": "benchmark", "jobs": jobs}
    start = time.perf_counter()
    preview = admin.post("/api/command/", {**body, "dry_run": True})
    preview_ms = 1000 * (time.perf_counter() - start)
    engine = m.manager.ctx.engine
    engine.step_times.clear()
    cpu_before = time.process_time()
    start = time.perf_counter()
    command = admin.post("/api/command/", body)
    plan_ms = 1000 * (time.perf_counter() - start)
    wait_until(lambda: admin.get(command["resource_uri"])["complete"], timeout=1800,
               interval=0.5)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu_before
    done = admin.get(command["resource_uri"])
    steps = 1000 * STEPS
    overhead = [1000 * s for s in engine.step_times]
    print(f"[{database}] ({label}) plan of 1,000 jobs: POST {plan_ms:.0f} ms (dry run "
          f"{preview_ms:.0f} ms, {len(preview['jobs'])} jobs previewed)")
    print(f"[{database}] ({label}) run of 1,000 jobs × {STEPS} steps over {len(ids)} hosts: "
          f"{wall:.1f} s, {steps / wall:.0f} steps/s, errored={done['errored']}")
    print(f"[{database}] ({label}) engine database time per step (record the outcome, start "
          f"the next step and its action): p50 {statistics.median(overhead):.2f} ms, "
          f"p99 {pct(overhead, 99):.2f} ms over {len(overhead)} advances")
    print(f"[{database}] ({label}) manager CPU for the run: {cpu:.1f} s "
          f"({1000 * cpu / steps:.2f} ms CPU per step, including the agents' gRPC traffic)")


def _print_deadlocks(log_path: str) -> None:
    """Deadlocks PostgreSQL reported during the run, with the statements involved."""
    with open(log_path, errors="replace") as f:
        lines = f.read().splitlines()
    starts = [n for n, line in enumerate(lines) if "deadlock detected" in line]
    print(f"deadlocks reported by PostgreSQL: {len(starts)}")
    for n in starts[:3]:
        print("\n".join("    " + line for line in lines[n:n + 8]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()
    for database in (("sqlite", "postgresql") if args.database == "both" else (args.database,)):
        with tempfile.TemporaryDirectory() as work:
            if database == "postgresql":
                with ThrowawayPostgres() as pg:
                    run(database, args.hosts, work, pg)
            else:
                run(database, args.hosts, work, None)


if __name__ == "__main__":
    main()
