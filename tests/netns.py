"""Test hosts as network namespaces joined to this machine by veth pairs.

Each ``NetnsHost`` gets its own namespace and a /30: the machine side is ``10.231.N.1``
(where a manager listening on 0.0.0.0 is reachable) and the host side ``10.231.N.2``.
The namespace shares the filesystem, so it runs the project's own programs.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from typing import Self

_numbers = itertools.count((os.getpid() % 50) * 4 + 10)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class NetnsHost:
    def __init__(self) -> None:
        n = next(_numbers) % 250 + 1
        self.name = f"shp-{os.getpid()}-{n}"
        self.outer = f"shpo{n}x{os.getpid() % 1000}"[:15]
        self.inner = f"shpi{n}x{os.getpid() % 1000}"[:15]
        self.gateway = f"10.231.{n}.1"
        self.address = f"10.231.{n}.2"

    def __enter__(self) -> Self:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.outer, "type", "veth", "peer", "name", self.inner)
        _ip("link", "set", self.inner, "netns", self.name)
        _ip("addr", "add", f"{self.gateway}/30", "dev", self.outer)
        _ip("link", "set", self.outer, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", self.inner)
        _ip("-n", self.name, "link", "set", self.inner, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        return self

    def __exit__(self, *exc: object) -> None:
        pids = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True,
                              text=True, check=False).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.outer], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)

    def cmd(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*argv), capture_output=True, text=True, check=False, **kwargs)

    def popen(self, *argv: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*argv), **kwargs)

    def link(self, up: bool) -> None:
        """Cut or restore the host's network (its end of the veth pair)."""
        _ip("-n", self.name, "link", "set", self.inner, "up" if up else "down")
