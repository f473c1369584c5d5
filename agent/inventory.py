"""What this machine is: names, boot time, CPU, memory, block devices and network interfaces.

Sent in Register and in every Hello, and returned by the ``report.inventory`` action. Read
from /proc, /sys/block and the kernel's netlink (pyroute2), never by running tools. The
result is a plain JSON-ready dict in the shape of the proto ``Inventory`` message; the paths
are parameters so tests and the simulator can point elsewhere.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from google.protobuf import json_format
from pyroute2 import IPRoute

from protos import agent_pb2

IFF_UP = 0x1
SECTOR_BYTES = 512
_VIRTUAL_PREFIXES = ("loop", "ram", "zram")


class LocalMachine:
    """The machine this process runs on, as actions and Hello see it."""

    def __init__(self, fqdn: str | None = None) -> None:
        self.fqdn = fqdn or socket.getfqdn()

    def inventory(self) -> dict[str, Any]:
        """Collect the inventory now (blocking: reads /proc, /sys and netlink)."""
        return collect(fqdn=self.fqdn)


def collect(fqdn: str | None = None, proc: str = "/proc", sys_block: str = "/sys/block") \
        -> dict[str, Any]:
    uname = os.uname()
    return {
        "fqdn": fqdn or socket.getfqdn(),
        "nodename": uname.nodename,
        "boot_time": boot_time(proc),
        "cpu_count": os.cpu_count() or 1,
        "memory_bytes": memory_bytes(proc),
        "architecture": platform.machine(),
        "kernel": uname.release,
        "block_devices": block_devices(sys_block),
        "interfaces": interfaces(),
    }


def to_message(inventory: dict[str, Any]) -> agent_pb2.Inventory:
    return json_format.ParseDict(inventory, agent_pb2.Inventory())


def boot_time(proc: str = "/proc") -> int:
    """Seconds since the epoch at boot (``btime`` in /proc/stat); 0 if unknown."""
    with open(os.path.join(proc, "stat")) as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def memory_bytes(proc: str = "/proc") -> int:
    """MemTotal from /proc/meminfo, in bytes; 0 if unknown."""
    with open(os.path.join(proc, "meminfo")) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def block_devices(sys_block: str = "/sys/block") -> list[dict[str, Any]]:
    """Whole disks under /sys/block; unused loop/ram devices (size 0) are left out."""
    devices = []
    for name in sorted(os.listdir(sys_block)):
        base = os.path.join(sys_block, name)
        size = int(_sysfs(base, "size") or 0) * SECTOR_BYTES
        if size == 0 and name.startswith(_VIRTUAL_PREFIXES):
            continue
        devices.append({
            "name": name,
            "size_bytes": size,
            "model": _sysfs(base, "device/model"),
            "serial": _sysfs(base, "device/serial") or _sysfs(base, "serial"),
            "rotational": _sysfs(base, "queue/rotational") == "1",
        })
    return devices


def _sysfs(base: str, name: str) -> str:
    """A sysfs attribute's stripped text, or "" when absent or unreadable."""
    try:
        with open(os.path.join(base, name), errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def interfaces() -> list[dict[str, Any]]:
    """Every link with its MAC, state, MTU and addresses (CIDR), from netlink."""
    with IPRoute() as ipr:
        links = ipr.get_links()
        addresses = ipr.get_addr()
    by_index: dict[int, list[str]] = {}
    for msg in addresses:
        address = msg.get("local") or msg.get("address")
        if address:
            by_index.setdefault(msg["index"], []).append(f"{address}/{msg['prefixlen']}")
    return [{
        "name": link.get("ifname") or "",
        "mac_address": link.get("address") or "",
        "addresses": by_index.get(link["index"], []),
        "up": bool(link["flags"] & IFF_UP),
        "mtu": link.get("mtu") or 0,
    } for link in links]
