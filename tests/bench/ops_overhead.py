"""What the audit log and metrics cost: the same REST work with them on and off, side by side.

Reads: ``GET /api/user/?limit=20`` from 32 clients with 10,000 users (as rest_list.py).
Writes: 1,000 ``POST /api/registration_token/`` then 1,000 ``PATCH`` (cancel) of those
tokens, from 32 clients. Goal (issue 13): under 5 % throughput lost with both on.
``change`` compares the medians; ``paired`` is the median of each on-run against the
off-run next to it in time.

    .venv/bin/python -m tests.bench.ops_overhead [--seconds 5] [--rounds 8] [--only sqlite]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.bench.harness import admin_client, manager_process, wrk
from tests.bench.rest_list import seed
from tests.pgcluster import ThrowawayPostgres


def _writes(url: str, token: str, ca_file: str, count: int) -> tuple[float, float]:
    """POST ``count`` tokens then PATCH (cancel) each, from 32 keep-alive connections;
    requests/s of each phase."""
    local = threading.local()

    def call(job: tuple[str, str, dict]) -> dict | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.trust_env = False
            local.session.headers["Authorization"] = f"Bearer {token}"
        method, path, body = job
        response = local.session.request(method, url + path, json=body, verify=ca_file, timeout=60)
        response.raise_for_status()
        return response.json() if response.content else None

    def phase(jobs: list[tuple[str, str, dict]]) -> tuple[float, list]:
        start = time.monotonic()
        results = list(pool.map(call, jobs))
        return len(jobs) / (time.monotonic() - start), results

    with ThreadPoolExecutor(32) as pool:
        post_rate, created = phase([("POST", "/api/registration_token/",
                                     {"profile": "compute_node"})] * count)
        patch_rate, _ = phase([("PATCH", f"/api/registration_token/{doc['id']}/",
                                {"cancelled": True}) for doc in created])
    return post_rate, patch_rate


FLAGS = {"off": ["--no-audit", "--no-metrics"], "on": ["--audit", "--metrics"]}
ROWS = (("read", "GET req/s"), ("post", "POST req/s"), ("patch", "PATCH req/s"),
        ("read_p99", "GET p99 ms"))


def measure(url: str, token: str, ca_file: str, seconds: int) -> dict[str, float]:
    read = wrk(f"{url}/api/user/?limit=20", token, 32, seconds)
    post, patch = _writes(url, token, ca_file, 1000)
    return {"read": read["rps"], "read_p99": read["p99_ms"], "post": post, "patch": patch}


def run(name: str, database_url: str, seconds: int, rounds: int) -> None:
    """Two managers on one database, one with audit and metrics off and one with them on,
    measured in turn ``rounds`` times each (off-on, on-off, off-on...).

    The machine is shared and drifts more than the difference being measured: taking
    turns every few seconds exposes both to the same drift, and comparing each run with
    its neighbour (the paired change) cancels what the medians of each side cannot."""
    seed(database_url, 10_000)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with (tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir,
          manager_process(off_dir, database_url, *FLAGS["off"]) as off_url,
          manager_process(on_dir, database_url, *FLAGS["on"]) as on_url):
        targets = {"off": (off_url, off_dir), "on": (on_url, on_dir)}
        tokens = {}
        for mode, (url, state) in targets.items():
            client = admin_client(url, state, "bench-password")
            client.get("/api/user/", limit=0)  # warm caches
            tokens[mode] = client.token
        for i in range(rounds):
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                url, state = targets[mode]
                runs[mode].append(measure(url, tokens[mode], f"{state}/tls/ca.crt", seconds))
    report(name, rounds, runs)


def report(name: str, rounds: int, runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{name} (medians of {rounds} runs each, taking turns)")
    print(f"  {'':14}{'off':>10}{'on':>10}{'change':>10}{'paired':>10}")
    for key, title in ROWS:
        off = statistics.median(r[key] for r in runs["off"])
        on = statistics.median(r[key] for r in runs["on"])
        paired = statistics.median(100 * (b[key] - a[key]) / a[key]
                                   for a, b in zip(runs["off"], runs["on"], strict=True))
        print(f"  {title:14}{off:>10.1f}{on:>10.1f}{100 * (on - off) / off:>9.1f}%"
              f"{paired:>9.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
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
