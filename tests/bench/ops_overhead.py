"""What the audit log and metrics cost: the same REST work with them on and off, side by side.

Reads: ``GET /api/user/?limit=20`` from 32 connections for ``--seconds`` with 10,000 users
(as rest_list.py). Writes: exactly 1,000 ``POST /api/registration_token/``, then one
``PATCH`` (cancel) of each token created, from 32 connections. wrk (C, one thread) drives
all of it, the writes through exact_count.lua: wrk only runs for a duration, so the script
holds back every request past the count and times the phase itself, from the first request
sent to the last response received. The benchmark's own process only waits.

Two figures per phase: requests/s, and the manager's CPU time per request (utime + stime
of its process over the phase, divided by the requests answered). CPU per request is what
a request costs the manager, and moves far less than requests/s with whatever else the
machine is doing; it leaves out the work PostgreSQL does for the manager, which requests/s
includes. A read phase's in-flight requests when wrk stops are served but not counted: a
small bias, the same on both sides.

Goal (issue 13): under 5 % throughput lost with both on. The two managers are measured in
turn, round after round; each on-run is compared with the off-run next to it in time.
``change`` is the median of those paired changes and ``spread`` their smallest and largest:
a spread that straddles zero is within this machine's noise.

    .venv/bin/python -m tests.bench.ops_overhead [--seconds 5] [--rounds 8] [--only sqlite]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Callable

from tests.bench.harness import (
    ManagerProcess,
    admin_client,
    spawn_manager,
    wrk,
    wrk_exact,
)
from tests.bench.rest_list import seed
from tests.pgcluster import ThrowawayPostgres

CLIENTS = 32
OBJECTS = 1000
TOKENS = "/api/registration_token/"
FLAGS = {"off": ["--no-audit", "--no-metrics"], "on": ["--audit", "--metrics"]}
# key, title, format of the off and on figures
ROWS = (("read_rps", "GET req/s", ".1f"), ("read_p99", "GET p99 ms", ".1f"),
        ("read_cpu", "GET CPU µs/req", ".0f"),
        ("post_rps", "POST req/s", ".1f"), ("post_cpu", "POST CPU µs/req", ".0f"),
        ("patch_rps", "PATCH req/s", ".1f"), ("patch_cpu", "PATCH CPU µs/req", ".0f"))


class Side:
    """One of the two managers under test, with what a run against it needs."""

    def __init__(self, manager: ManagerProcess, state_dir: str) -> None:
        self.manager = manager
        self.token = admin_client(manager.url, state_dir, "bench-password").token
        self.ids_file = os.path.join(state_dir, "bench-token-ids")

    def read(self, seconds: int) -> dict[str, float]:
        return wrk(f"{self.manager.url}/api/user/?limit=20", self.token, CLIENTS, seconds)

    def post(self, count: int) -> dict[str, float]:
        return wrk_exact(self.manager.url, self.token, CLIENTS, "POST", TOKENS,
                         '{"profile": "compute_node"}', self.ids_file, count)

    def patch(self) -> dict[str, float]:
        """Cancel each token the last ``post`` created."""
        return wrk_exact(self.manager.url, self.token, CLIENTS, "PATCH", TOKENS + "{id}/",
                         '{"cancelled": true}', self.ids_file)

    def measure(self, seconds: int) -> dict[str, float]:
        """One run of each phase: requests/s, manager CPU µs per request, GET p99 in ms,
        and how many answers were errors (not 2xx or 3xx)."""
        figures = {"errors": 0}
        for phase, load in (("read", lambda: self.read(seconds)),
                            ("post", lambda: self.post(OBJECTS)), ("patch", self.patch)):
            result, cpu = self._with_cpu(load)
            figures[f"{phase}_rps"] = result["rps"]
            figures[f"{phase}_cpu"] = 1e6 * cpu / result["requests"]
            figures["errors"] += result["errors"]
            if phase == "read":
                figures["read_p99"] = result["p99_ms"]
        return figures

    def warm_up(self) -> None:
        """A little of each phase, so that first-use costs (imports, caches, the database's
        buffers) fall outside the runs measured."""
        self.read(1)
        self.post(100)
        self.patch()

    def _with_cpu(self, load: Callable[[], dict[str, float]]) -> tuple[dict[str, float], float]:
        before = self.manager.cpu_seconds()
        result = load()
        return result, self.manager.cpu_seconds() - before


def run(name: str, database_url: str, seconds: int, rounds: int) -> None:
    """Two managers on one database, one with audit and metrics off and one with them on,
    measured in turn ``rounds`` times each (off-on, on-off, off-on...).

    The machine is shared and drifts more than the difference being measured: taking
    turns exposes both to the same drift, and comparing each run with its neighbour in
    time (the paired change) cancels what the medians of each side cannot."""
    seed(database_url, 10_000)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with (tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir,
          spawn_manager(off_dir, database_url, *FLAGS["off"]) as off,
          spawn_manager(on_dir, database_url, *FLAGS["on"]) as on):
        sides = {"off": Side(off, off_dir), "on": Side(on, on_dir)}
        for side in sides.values():
            side.warm_up()
        for i in range(rounds):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                runs[mode].append(sides[mode].measure(seconds))
    report(name, rounds, runs)


def report(name: str, rounds: int, runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{name}: medians of {rounds} runs each, off and on taking turns")
    print("  change: median of the changes on vs off between neighbouring runs;"
          " spread: their min..max")
    print(f"  {'':18}{'off':>10}{'on':>10}{'change':>10}   spread")
    for key, title, fmt in ROWS:
        off = statistics.median(r[key] for r in runs["off"])
        on = statistics.median(r[key] for r in runs["on"])
        changes = [100 * (b[key] - a[key]) / a[key]
                   for a, b in zip(runs["off"], runs["on"], strict=True)]
        print(f"  {title:18}{off:>10{fmt}}{on:>10{fmt}}{statistics.median(changes):>+9.1f}%"
              f"   {min(changes):+.1f} .. {max(changes):+.1f} %", flush=True)
    print("  (req/s: minus is a loss; p99 and CPU: plus is a cost)")
    errors = {mode: sum(r["errors"] for r in side) for mode, side in runs.items()}
    if any(errors.values()):
        print(f"  WARNING: answers not 2xx or 3xx, off {errors['off']}, on {errors['on']}:"
              " these figures are not comparable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each read phase")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as db_dir:
            run("SQLite", f"sqlite:///{db_dir}/shepherd.db", args.seconds, args.rounds)
    if args.only != "sqlite":
        with ThrowawayPostgres() as pg:
            run("PostgreSQL", pg.create_database("bench"), args.seconds, args.rounds)


if __name__ == "__main__":
    main()
