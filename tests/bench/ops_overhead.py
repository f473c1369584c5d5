"""What the audit log and metrics cost: the same REST work with them on and off, side by side.

Two managers, one with audit and metrics off and one with them on, each on a database of its
own (seeded alike), are loaded *at the same time* by two wrk processes. This machine's speed
drifts by more than the difference measured (the same run, minutes apart, can be 30 % faster),
and running the two sides together exposes both to the same drift; taking turns did not.

Reads: ``GET /api/user/?limit=20`` from 32 connections per side for ``--seconds``, with
10,000 users (as rest_list.py). Writes: exactly 1,000 ``POST /api/registration_token/``,
then one ``PATCH`` (cancel) of each token created, from 32 connections per side, through
exact_count.lua (wrk only runs for a duration). A write phase's rate is taken over the time
both sides were running: from the later first request to the earlier last response,
counting each side's answers in that window (the side that finishes first would otherwise
leave the other the whole machine for its last stretch).

Figures per phase: requests/s, and the manager's CPU time per request (utime + stime of its
process over the phase, divided by the requests answered). On PostgreSQL also the server's
CPU per request: that of the server processes connected to the side's database (the
manager's connections). All of it shares this machine's cores, so requests/s follows the
sum of the two.

Goal (issue 13): under 5 % throughput lost with both on. ``change`` is the median of the
rounds' changes (on against off in the same round), ``95 % CI`` the distribution-free
confidence interval of that median (order statistics of the binomial: no assumption on how
the rounds scatter) and ``spread`` their smallest and largest. A single round's change
scatters by tens of per cent on this 2-core VM, so the goal is shown only when the interval
is narrow enough: the more rounds, the narrower (about as their square root).
``--control`` runs two managers with both off: how far apart the method puts two equals;
``--on audit`` (or ``metrics``) turns on only that one, to tell their costs apart.

    .venv/bin/python -m tests.bench.ops_overhead [--seconds 5] [--rounds 8] [--only sqlite]
                                                 [--control | --on both|audit|metrics]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg2

from tests.bench.harness import (
    ManagerProcess,
    admin_client,
    process_cpu_seconds,
    spawn_manager,
    wrk,
    wrk_exact,
)
from tests.bench.rest_list import seed
from tests.pgcluster import ThrowawayPostgres

CLIENTS = 32
OBJECTS = 1000
USERS = 10_000
TOKENS = "/api/registration_token/"
FLAGS = {"off": ["--no-audit", "--no-metrics"], "on": ["--audit", "--metrics"]}
#: what ``--on`` may turn on in the "on" manager
ON = {"both": FLAGS["on"], "audit": ["--audit", "--no-metrics"],
      "metrics": ["--no-audit", "--metrics"]}
# key, title, format of the off and on figures
ROWS = (("read_rps", "GET req/s", ".1f"), ("read_p99", "GET p99 ms", ".1f"),
        ("read_cpu", "GET CPU µs/req", ".0f"), ("read_db", "GET DB CPU µs/req", ".0f"),
        ("post_rps", "POST req/s", ".1f"), ("post_cpu", "POST CPU µs/req", ".0f"),
        ("post_db", "POST DB CPU µs/req", ".0f"),
        ("patch_rps", "PATCH req/s", ".1f"), ("patch_cpu", "PATCH CPU µs/req", ".0f"),
        ("patch_db", "PATCH DB CPU µs/req", ".0f"))


class Side:
    """One of the two managers under test, with what a run against it needs."""

    def __init__(self, manager: ManagerProcess, state_dir: str, database_url: str) -> None:
        self.manager = manager
        self.database_url = database_url
        self.token = admin_client(manager.url, state_dir, "bench-password").token
        self.ids_file = os.path.join(state_dir, "bench-token-ids")

    def read(self, seconds: int) -> dict[str, Any]:
        return wrk(f"{self.manager.url}/api/user/?limit=20", self.token, CLIENTS, seconds)

    def post(self, count: int) -> dict[str, Any]:
        return wrk_exact(self.manager.url, self.token, CLIENTS, "POST", TOKENS,
                         '{"profile": "compute_node"}', self.ids_file, count)

    def patch(self) -> dict[str, Any]:
        """Cancel each token the last ``post`` created."""
        return wrk_exact(self.manager.url, self.token, CLIENTS, "PATCH", TOKENS + "{id}/",
                         '{"cancelled": true}', self.ids_file)

    def warm_up(self) -> None:
        """A little of each phase, so that first-use costs (imports, caches, the database's
        buffers) fall outside the runs measured."""
        self.read(1)
        self.post(100)
        self.patch()

    def with_cpu(self, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """``load()``'s result, with the manager's CPU µs per request answered (``cpu``) and,
        on PostgreSQL, the server's (``db_cpu``)."""
        before, db_before = self.manager.cpu_seconds(), self.database_cpu()
        result = load()
        result["cpu"] = 1e6 * (self.manager.cpu_seconds() - before) / result["requests"]
        if db_before is not None:
            result["db_cpu"] = 1e6 * (self.database_cpu() - db_before) / result["requests"]
        return result

    def database_cpu(self) -> float | None:
        """CPU seconds of the PostgreSQL processes serving this side's database (its
        connections last as long as the manager); None on SQLite, which works inside the
        manager's process."""
        if not self.database_url.startswith("postgresql"):
            return None
        server, _, name = self.database_url.rpartition("/")
        with psycopg2.connect(f"{server}/postgres") as connection, connection.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))
            pids = [pid for (pid,) in cur.fetchall()]
        connection.close()
        total = 0.0
        for pid in pids:
            with contextlib.suppress(FileNotFoundError):  # a connection closed since
                total += process_cpu_seconds(pid)
        return total


def together(sides: dict[str, Side], phase: str, seconds: int, first: str
             ) -> dict[str, dict[str, Any]]:
    """Run one phase against both sides at once, the load on ``first`` started first; each
    side's figures."""
    loads = {"read": lambda s: s.read(seconds), "post": lambda s: s.post(OBJECTS),
             "patch": lambda s: s.patch()}
    order = sorted(sides, key=lambda mode: mode != first)
    with ThreadPoolExecutor(len(sides)) as pool:
        futures = {mode: pool.submit(sides[mode].with_cpu, lambda s=sides[mode]: loads[phase](s))
                   for mode in order}
        results = {mode: future.result() for mode, future in futures.items()}
    if phase != "read":
        overlap_rates(results)
    return results


def overlap_rates(results: dict[str, dict[str, Any]]) -> None:
    """Set each write run's ``rps`` to its answers per second while all runs were going."""
    start = max(r["started"] for r in results.values())
    end = min(r["arrivals"][-1] for r in results.values())
    if end <= start:
        raise RuntimeError("the runs did not overlap: the machine is too busy to compare them")
    for r in results.values():
        r["rps"] = sum(start <= t <= end for t in r["arrivals"]) / (end - start)


def measure(sides: dict[str, Side], seconds: int, first: str) -> dict[str, dict[str, float]]:
    """One round: each phase on both sides together; figures by side."""
    figures: dict[str, dict[str, float]] = {mode: {"errors": 0} for mode in sides}
    for phase in ("read", "post", "patch"):
        for mode, result in together(sides, phase, seconds, first).items():
            figures[mode][f"{phase}_rps"] = result["rps"]
            figures[mode][f"{phase}_cpu"] = result["cpu"]
            if "db_cpu" in result:
                figures[mode][f"{phase}_db"] = result["db_cpu"]
            figures[mode]["errors"] += result["errors"]
            if phase == "read":
                figures[mode]["read_p99"] = result["p99_ms"]
    return figures


@contextmanager
def managers(database_urls: dict[str, str], flags: dict[str, list[str]]
             ) -> Iterator[dict[str, Side]]:
    """A manager per side on its own database, each with its state directory. Neither is
    pinned to a CPU: pinned, each side met its own CPU's disturbances, and a test of two
    identical managers (A/A) spread from -35 to +16 % where unpinned it kept within 5 %."""
    with ExitStack() as stack:
        sides = {}
        for mode, url in database_urls.items():
            state_dir = stack.enter_context(tempfile.TemporaryDirectory())
            manager = stack.enter_context(spawn_manager(state_dir, url, *flags[mode]))
            sides[mode] = Side(manager, state_dir, url)
        yield sides


def run(name: str, database_urls: dict[str, str], seconds: int, rounds: int,
        flags: dict[str, list[str]]) -> None:
    for url in database_urls.values():
        seed(url, USERS)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in database_urls}
    with managers(database_urls, flags) as sides:
        for side in sides.values():
            side.warm_up()
        for n in range(rounds):
            # the side loaded first alternates, so that neither is always the second: in A/A
            # runs (--control) without this, the second came out 2 to 4 % slower
            first = list(sides)[n % 2]
            for mode, figures in measure(sides, seconds, first).items():
                runs[mode].append(figures)
    report(name, rounds, runs)


def report(name: str, rounds: int, runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{name}: medians of {rounds} rounds, off and on running together")
    print("  change: median of the rounds' changes, on against off, with its 95 % confidence "
          "interval; spread: their min..max")
    print(f"  {'':18}{'off':>10}{'on':>10}{'change':>10}   {'95 % CI':18}spread")
    for key, title, fmt in ROWS:
        if key not in runs["off"][0]:
            continue
        off = statistics.median(r[key] for r in runs["off"])
        on = statistics.median(r[key] for r in runs["on"])
        changes = [100 * (b[key] - a[key]) / a[key]
                   for a, b in zip(runs["off"], runs["on"], strict=True)]
        low, high = median_interval(changes)
        interval = f"{low:+.1f} .. {high:+.1f} %"
        print(f"  {title:18}{off:>10{fmt}}{on:>10{fmt}}{statistics.median(changes):>+9.1f}%"
              f"   {interval:18}{min(changes):+.1f} .. {max(changes):+.1f} %", flush=True)
    print("  (req/s: minus is a loss; p99 and CPU: plus is a cost)")
    errors = {mode: sum(r["errors"] for r in side) for mode, side in runs.items()}
    if any(errors.values()):
        print(f"  WARNING: answers not 2xx or 3xx, off {errors['off']}, on {errors['on']}:"
              " these figures are not comparable")


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """The distribution-free confidence interval of the median of ``values``: the k-th
    smallest and k-th largest, k the largest with P(Binomial(n, 1/2) < k) <= (1 - c) / 2.
    Too few values for that confidence give their whole range."""
    ordered = sorted(values)
    n = len(ordered)
    tail, k = 0.0, 0
    while k < n // 2:
        tail += math.comb(n, k) / 2 ** n
        if tail > (1 - confidence) / 2:
            break
        k += 1
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each read phase")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=8)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--control", action="store_true",
                       help="both managers with audit and metrics off (the method's noise)")
    which.add_argument("--on", choices=tuple(ON), default="both",
                       help="what the 'on' manager turns on (to tell the two costs apart)")
    args = parser.parse_args()
    flags = {"off": FLAGS["off"], "on": FLAGS["off"] if args.control else ON[args.on]}
    suffix = " (control: both off)" if args.control else \
        "" if args.on == "both" else f" (on: {args.on} only)"
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as db_dir:
            urls = {mode: f"sqlite:///{db_dir}/{mode}.db" for mode in FLAGS}
            run("SQLite" + suffix, urls, args.seconds, args.rounds, flags)
    if args.only != "sqlite":
        with ThrowawayPostgres() as pg:
            run("PostgreSQL" + suffix,
                {mode: pg.create_database(f"bench_{mode}") for mode in FLAGS},
                args.seconds, args.rounds, flags)


if __name__ == "__main__":
    main()
