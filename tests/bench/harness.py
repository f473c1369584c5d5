"""Shared parts of the benchmarks: a manager in its own process, and wrk load runs.

The manager runs as a separate ``shepherd-manager serve`` process so the load generator
(wrk, written in C) never competes with it for the Python GIL: the figures are the manager's.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from api.client import Client


@dataclass(frozen=True)
class ManagerProcess:
    """A running ``shepherd-manager serve``: where it listens and which process it is."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User plus system CPU time the manager has used so far, all its threads together."""
        return process_cpu_seconds(self.pid)


def process_cpu_seconds(pid: int) -> float:
    """``utime`` + ``stime`` of ``/proc/PID/stat`` (clock ticks: 10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def spawn_manager(state_dir: str, database_url: str, *flags: str) -> Iterator[ManagerProcess]:
    """Run ``shepherd-manager serve`` on a free port until the block ends."""
    cmd = [sys.executable, "-m", "manager", "serve", "--state-dir", state_dir, "--database-url",
           database_url, "--port", "0", "--agent-port", "0", "--registration-port", "0",
           "--address", "127.0.0.1", "--log-level", "warning", *flags]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            match = re.search(r"REST API on (\S+)/api/", line)
            if match:
                url = match.group(1)
                break
        if url is None:
            raise RuntimeError("the manager did not start")
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield ManagerProcess(url, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def manager_process(state_dir: str, database_url: str, *flags: str) -> Iterator[str]:
    """Run ``shepherd-manager serve`` on a free port; yield its base URL."""
    with spawn_manager(state_dir, database_url, *flags) as manager:
        yield manager.url


def admin_client(url: str, state_dir: str, password: str | None = None) -> Client:
    """A client logged in as ``admin`` (password from the first-start file unless given)."""
    if password is None:
        with open(os.path.join(state_dir, "initial-admin-password")) as f:
            password = f.read().strip()
    client = Client(url, verify=os.path.join(state_dir, "tls", "ca.crt"))
    client.login("admin", password)
    return client


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_EXACT_SCRIPT = os.path.join(os.path.dirname(__file__), "exact_count.lua")


def wrk(url: str, token: str, connections: int, seconds: int, threads: int = 1) -> dict[str, float]:
    """Closed-loop load with wrk; p50/p90/p99 latency in ms, requests/s, and the number of
    requests answered (``requests``) and of answers not 2xx or 3xx (``errors``)."""
    _require_wrk()
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "--timeout", "60s",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    result = _latencies(out)
    result["requests"] = int(re.search(r"(\d+) requests in ", out).group(1))
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(errors.group(1)) if errors else 0
    return result


def wrk_exact(url: str, token: str, connections: int, method: str, path: str, body: str,
              ids_file: str, count: int = 0, limit: int = 300) -> dict[str, Any]:
    """Exactly ``count`` requests, or one per id in ``ids_file`` when ``path`` holds ``{id}``,
    from ``connections`` keep-alive connections of one wrk thread (see exact_count.lua).

    A run with a plain path writes the ``id`` of each object it created to ``ids_file``, for
    a later run on ``.../{id}/``. Returns what ``wrk`` does, with ``rps`` taken over the time
    from the first request sent to the last response received, and ``started`` and
    ``arrivals``: when the first request went and each response came (``time.monotonic``
    seconds, comparable between concurrent runs). ``limit`` bounds the run."""
    _require_wrk()
    proc = subprocess.Popen(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{limit}s", "--latency",
         "--timeout", "60s", "-H", f"Authorization: Bearer {token}", "-s", _EXACT_SCRIPT,
         url, "--", method, path, body, ids_file, str(count)],
        stdout=subprocess.PIPE, text=True)
    try:
        done = None
        for line in proc.stdout:
            done = re.match(r"exact: (\d+) requests in ([\d.]+) s, (\d+) errors", line)
            if done:
                break
        proc.send_signal(signal.SIGINT)  # ends wrk's sleep: it prints its statistics and exits
        out = proc.stdout.read()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if done is None:
        raise RuntimeError(f"wrk did not answer with the {method} requests in {limit} s")
    requests, seconds, errors = int(done.group(1)), float(done.group(2)), int(done.group(3))
    with open(ids_file + ".times") as f:
        started, *arrivals = (float(line) for line in f)
    return {**_latencies(out), "requests": requests, "rps": requests / seconds, "errors": errors,
            "started": started, "arrivals": arrivals}


def _require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; tests/run installs it)")


def _latencies(out: str) -> dict[str, float]:
    """p50/p90/p99 in ms from wrk's ``--latency`` distribution."""
    result = {}
    for pct in ("50", "90", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE).groups()
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    return result


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
