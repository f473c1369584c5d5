"""Power control through Debian's fence agents (``fence_ipmilan``, ``fence_redfish``,
``fence_apc_snmp``, …): any device a fence agent speaks to, PDUs included.

A fence agent started without arguments reads its options as ``name=value`` lines on stdin,
so that is how every option goes in, the password among them: nothing secret is ever on a
command line (``ps`` shows the bare agent path). The agent runs in its own process group and
the whole group is killed when the outlet's time is up. Its exit code is the answer
(``status``: 0 on, 2 off; other actions: 0 done) and, on failure, its last ERROR line the
cause.

``options`` pass through to the agent, except the ones this driver sets itself (address,
credentials, action, plug) and those that would make the agent run another program or read a
secret from elsewhere (``*_path``, ``*_script``, ``ssh_options``, …): the manager's options
must not become a way to run commands on the BMC agent's machine.

Fence agents have no graceful shutdown; ``power.off`` is a direct off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import time

from agent.power import (
    MASK,
    Connection,
    Limits,
    Misconfigured,
    Outlet,
    PowerDriver,
    PowerError,
    mask,
    parse_options,
)

STATUS_ON, STATUS_OFF = 0, 2
RESERVED = {"ip", "ipaddr", "ipport", "port", "username", "login", "password", "passwd",
            "action", "option", "plug", "port_as_ip"}
REFUSED = re.compile(r"path|script|ssh_options|identity_file|command|exec|sudo|passw")
ERROR_LINE = re.compile(r"^(?:\S+ \S+ )?ERROR: (?:Failed: )?(.*)$")
OUTPUT_TAIL = 2000      # characters of each stream kept for the console


class FenceDriver(PowerDriver):
    name = "fence"

    def device(self, outlet: Outlet) -> str:
        return outlet.fence_agent or "fence agent"

    def where(self, outlet: Outlet) -> str:
        where = super().where(outlet)
        return f"{where} plug {outlet.identifier}" if outlet.identifier else where

    async def connect(self, outlet: Outlet, limits: Limits) -> Connection:
        path = shutil.which(outlet.fence_agent) if outlet.fence_agent else None
        if path is None:
            raise Misconfigured(f"fence agent {outlet.fence_agent!r} not found on PATH "
                                "(is fence-agents installed?)")
        return FenceConnection(path, stdin_lines(outlet), outlet, limits)


def stdin_lines(outlet: Outlet) -> list[tuple[str, str]]:
    """The agent's options as (name, value), ``action`` excluded (added per call)."""
    extra = parse_options(outlet.options)
    for name in extra:
        if name in RESERVED or REFUSED.search(name):
            raise Misconfigured(f"fence option {name!r} is not allowed here (it is set by "
                                "Shepherd, or names a program or a secret)")
    lines = [("ip", outlet.address)]
    if outlet.port is not None:
        lines.append(("ipport", str(outlet.port)))
    if outlet.username:
        lines.append(("username", outlet.username))
    if outlet.password:
        lines.append(("password", outlet.password))
    if outlet.identifier:
        lines.append(("plug", outlet.identifier))
    lines += sorted(extra.items())
    if any("\n" in value or "\r" in value for _, value in lines):
        raise Misconfigured("a fence option contains a line break")
    return lines


class FenceConnection(Connection):
    def __init__(self, path: str, lines: list[tuple[str, str]], outlet: Outlet,
                 limits: Limits) -> None:
        self.path, self.lines, self.outlet, self.limits = path, lines, outlet, limits
        self.agent = os.path.basename(path)

    async def query(self) -> str:
        rc, stderr = await self._run("status")
        if rc == STATUS_ON:
            return "on"
        if rc == STATUS_OFF:
            return "off"
        raise self._failure("status", rc, stderr)

    async def on(self) -> None:
        await self._act("on")

    async def off(self) -> None:
        await self._act("off")

    async def reset(self) -> None:
        await self._act("reboot")

    async def _act(self, action: str) -> None:
        rc, stderr = await self._run(action)
        if rc != 0:
            raise self._failure(action, rc, stderr)

    async def _run(self, action: str) -> tuple[int, str]:
        """Run the agent once; (exit code, stderr). Killed with its children if cancelled."""
        stdin = "".join(f"{name}={value}\n" for name, value in
                        self.lines + [("action", action)]).encode()
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            self.path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = await proc.communicate(stdin)
        except asyncio.CancelledError:
            await _kill(proc)
            self._console(action, None, b"", b"", time.monotonic() - start)
            raise
        self._console(action, proc.returncode, stdout, stderr, time.monotonic() - start)
        return proc.returncode, mask(stderr.decode(errors="replace"), self.outlet.password)

    def _failure(self, action: str, rc: int, stderr: str) -> PowerError:
        reasons = [m.group(1).strip() for m in map(ERROR_LINE.match, stderr.splitlines()) if m]
        reason = reasons[-1] if reasons else _last_meaningful_line(stderr) or "no message"
        return PowerError(f"{self.agent} action={action} failed (exit code {rc})", reason)

    def _console(self, action: str, rc: int | None, stdout: bytes, stderr: bytes,
                 seconds: float) -> None:
        """One console entry: the command, its stdin with the password masked, the outcome."""
        shown = " ".join(f"{n}={MASK if n == 'password' else v}" for n, v in
                         self.lines + [("action", action)])
        outcome = "killed: out of time" if rc is None else f"exit code {rc}"
        entry = f"$ {self.path} <<< '{shown}' → {outcome} in {seconds * 1000:.0f} ms"
        for label, data in (("stdout", stdout), ("stderr", stderr)):
            text = mask(data.decode(errors="replace").strip()[-OUTPUT_TAIL:],
                        self.outlet.password)
            if text and (label == "stdout" or rc not in (0, STATUS_OFF)):
                entry += f"\n{label}: {text}"
        self.limits.console(entry)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(proc.wait(), 5)


def _last_meaningful_line(text: str) -> str:
    """The last stderr line that is not Python's warning noise (fence agents print a
    DeprecationWarning on every run)."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line and "Warning" not in line and not line.startswith("from "):
            return line[:300]
    return ""
