"""What the audit log and metrics cost: the same REST work with them on and off, side by side.

Reads: ``GET /api/user/?limit=20`` from 32 clients with 10,000 users (as rest_list.py).
Writes: 1,000 ``POST /api/registration_token/`` then 1,000 ``PATCH`` (cancel) of those
tokens, from 32 clients. Goal (issue 13): under 5 % throughput lost with both on.

    .venv/bin/python -m tests.bench.ops_overhead [--seconds 10] [--only sqlite]
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


def measure(database_url: str, seconds: int, flags: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as state, manager_process(state, database_url, *flags) as url:
        client = admin_client(url, state, "bench-password")
        client.get("/api/user/", limit=0)
        read = wrk(f"{url}/api/user/?limit=20", client.token, 32, seconds)
        post, patch = _writes(url, client.token, f"{state}/tls/ca.crt", 1000)
    return {"read": read["rps"], "read_p99": read["p99_ms"], "post": post, "patch": patch}


def run(name: str, database_url: str, seconds: int, rounds: int) -> None:
    """Alternate off and on ``rounds`` times (the machine drifts more than the difference
    between one run and the next); report the medians."""
    seed(database_url, 10_000)
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        runs["off"].append(measure(database_url, seconds, ["--no-audit", "--no-metrics"]))
        runs["on"].append(measure(database_url, seconds, ["--audit", "--metrics"]))
    print(f"\n{name} (medians of {rounds} alternating runs)")
    print(f"  {'':14}{'off':>10}{'on':>10}{'change':>10}")
    for key, title in (("read", "GET req/s"), ("post", "POST req/s"), ("patch", "PATCH req/s"),
                       ("read_p99", "GET p99 ms")):
        off = statistics.median(r[key] for r in runs["off"])
        on = statistics.median(r[key] for r in runs["on"])
        print(f"  {title:14}{off:>10.1f}{on:>10.1f}{100 * (on - off) / off:>9.1f}%", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as db_dir:
            run("SQLite", f"sqlite:///{db_dir}/shepherd.db", args.seconds, args.rounds)
    if args.only != "sqlite":
        with ThrowawayPostgres() as pg:
            run("PostgreSQL", pg.create_database("bench"), args.seconds, args.rounds)


if __name__ == "__main__":
    main()
