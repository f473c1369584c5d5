"""What this machine is: names, boot time, CPU, memory, block devices and network interfaces.

Sent in Register and in every Hello, and returned by the ``report.inventory`` action. Read
from /proc, /sys/block and the kernel's netlink (pyroute2), never by running tools. The
result is a plain JSON-ready dict in the shape of the proto ``Inventory`` message; the paths
are parameters so tests and the simulator can point elsewhere.

``LocalMachine`` also answers the ``host.validate`` checks (commands, kernel modules,
devices, clock). Only a kernel module that is not loaded needs a tool: ``modinfo``, run as
an asyncio subprocess so that the agent's event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import shutil
import socket
import time
from typing import Any

from google.protobuf import json_format
from pyroute2 import IPRoute

from protos import agent_pb2

IFF_UP = 0x1
SECTOR_BYTES = 512
STA_UNSYNC = 0x0040     # timex.status: the kernel's clock is not synchronised
TIME_ERROR = 5          # adjtimex() return value: clock not synchronised
_VIRTUAL_PREFIXES = ("loop", "ram", "zram")


class LocalMachine:
    """The machine this process runs on, as actions and Hello see it.

    ``sys_module`` and ``modinfo`` are parameters so tests can stand in for /sys/module and
    for the tool.
    """

    def __init__(self, fqdn: str | None = None, sys_module: str = "/sys/module",
                 modinfo: str = "modinfo") -> None:
        self.fqdn = fqdn or socket.getfqdn()
        self.sys_module = sys_module
        self.modinfo = modinfo

    def inventory(self) -> dict[str, Any]:
        """Collect the inventory now (blocking: reads /proc, /sys and netlink)."""
        return collect(fqdn=self.fqdn)

    def has_command(self, name: str) -> bool:
        """Whether ``name`` is an executable on this process's PATH."""
        return shutil.which(name) is not None

    async def kernel_module_state(self, name: str, timeout: float | None) -> str:
        return await kernel_module_state(name, timeout, self.sys_module, self.modinfo)

    def has_device(self, path: str) -> bool:
        """Whether ``path`` exists (a dangling symlink does not)."""
        return os.path.exists(path)

    def ntp_synchronized(self) -> bool | None:
        return ntp_synchronized()

    def now(self) -> float:
        return time.time()


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


async def kernel_module_state(name: str, timeout: float | None, sys_module: str = "/sys/module",
                              modinfo: str = "modinfo") -> str:
    """"loaded" (in /sys/module), "available" (``modinfo -n`` finds it) or "absent".

    Without the ``modinfo`` tool nothing can be found, so the module is "absent". Raises
    ``TimeoutError`` when modinfo outlives ``timeout`` seconds; it is killed then, and also
    when the caller is cancelled.
    """
    if name in (".", ".."):         # would name /sys/module itself or its parent
        return "absent"
    # The kernel lists modules with "_" where their file names may have "-".
    if os.path.isdir(os.path.join(sys_module, name.replace("-", "_"))):
        return "loaded"
    try:
        proc = await asyncio.create_subprocess_exec(
            modinfo, "-n", "--", name, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    except OSError:
        return "absent"
    try:
        returncode = await asyncio.wait_for(proc.wait(), timeout)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return "available" if returncode == 0 else "absent"


class _Timex(ctypes.Structure):
    """``struct timex`` from <sys/timex.h>, as glibc and the kernel lay it out."""

    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
                ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
                ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
                ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
                ("tai", ctypes.c_int), ("_reserved", ctypes.c_int * 11)]


def ntp_synchronized() -> bool | None:
    """The kernel's view of NTP synchronisation, or None when it cannot be asked.

    A read-only ``ntp_adjtime`` (modes 0): no privilege needed, nothing changed. A failure
    (no such libc function, an error return) gives None rather than an exception.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        adjtime = getattr(libc, "ntp_adjtime", None) or libc.adjtimex
        timex = _Timex()
        returncode = adjtime(ctypes.byref(timex))
    except (OSError, AttributeError):   # no libc to load, or no such function in it
        return None
    return clock_synchronized(returncode, timex.status)


def clock_synchronized(returncode: int, status: int) -> bool | None:
    """Decode an ``adjtimex`` answer: None on error, False when unsynchronised."""
    if returncode == -1:
        return None
    return returncode != TIME_ERROR and not status & STA_UNSYNC
