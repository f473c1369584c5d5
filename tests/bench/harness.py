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

from api.client import Client


@contextmanager
def manager_process(state_dir: str, database_url: str, *flags: str) -> Iterator[str]:
    """Run ``shepherd-manager serve`` on a free port; yield its base URL."""
    cmd = [sys.executable, "-m", "manager", "serve", "--state-dir", state_dir, "--database-url",
           database_url, "--port", "0", "--agent-port", "0", "--registration-port", "0", "--address", "127.0.0.1", "--log-level", "warning", *flags]
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
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def admin_client(url: str, state_dir: str, password: str | None = None) -> Client:
    """A client logged in as ``admin`` (password from the first-start file unless given)."""
    if password is None:
        with open(os.path.join(state_dir, "initial-admin-password")) as f:
            password = f.read().strip()
    client = Client(url, verify=os.path.join(state_dir, "tls", "ca.crt"))
    client.login("admin", password)
    return client


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(url: str, token: str, connections: int, seconds: int, threads: int = 1) -> dict[str, float]:
    """Closed-loop load with wrk; p50/p90/p99 latency in ms and requests/s."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; tests/run installs it)")
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "--timeout", "60s",
         "-H", f"Authorization: Bearer {token}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    result = {}
    for pct in ("50", "90", "99"):
        value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE).groups()
        result[f"p{pct}_ms"] = float(value) * _UNITS[unit]
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = int(errors.group(1)) if errors else 0
    return result


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
