"""IPMI 2.0 (RMCP+, "lanplus") power control with pyghmi.

pyghmi blocks, and keeps process-wide session tables fed by one IO thread: its calls run in
the power threads (``run_blocking``). Three of its habits (1.6.19) shape this module:

- A login can retry for ever: when a BMC ignores RAKP1 (pyghmi's own BMC server does, for an
  unknown user), pyghmi's client starts the login again without end. So the login runs in
  pyghmi's asynchronous mode, and this module turns pyghmi's event loop itself, until the
  login ends or the outlet's deadline passes, when the session is given up. A login that
  pyghmi gives up on (it does after ~5 s of silence) is tried again while time is left, so
  "no answer within N s" means N seconds.
- Its own session sharing hangs: a second ``Command`` for the same BMC and credentials finds
  the first login still listed as in progress and waits for it for ever. So logged-in
  Commands are kept here (``_Sessions``), one per BMC, port and credentials, and reused while
  pyghmi deems them alive (it sends keepalives while any call runs); a status sweep every few
  seconds then logs in once. Sessions are not logged out; an idle one expires on the BMC.
- A cancelled command leaves its thread waiting inside pyghmi; giving the session up
  (``_abandon``) makes those waits end at once.

pyghmi's client also stalls now and then for 0.5-1.7 s on an answer that has arrived (a race
in its IO loop; test-peers.md). No exchange here has a budget shorter than what is left of
the outlet's time, so a stall costs time, never a false "no answer".

Chassis status and chassis control go out as the plain IPMI commands (netfn 0, commands 1 and
2), as ipmitool sends them; pyghmi's ``get_power``/``set_power`` helpers would first identify
the BMC's vendor and read the state again before switching (more round trips per outlet).
The private pyghmi names this needs are used in ``_Sessions``, ``_alive`` and ``_abandon``
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any, ClassVar

from pyghmi import exceptions as pyghmi_errors
from pyghmi.ipmi import command as ipmi_command
from pyghmi.ipmi.private import session as ipmi_session

from agent.power import (
    AuthenticationFailed,
    Connection,
    Limits,
    Misconfigured,
    NoAnswer,
    Outlet,
    PowerDriver,
    PowerError,
    Unsupported,
    run_blocking,
    submit_blocking,
    truthy,
)

CHASSIS_STATUS, CHASSIS_CONTROL = 0x01, 0x02            # netfn 0 (chassis)
CONTROL = {"off": 0, "on": 1, "reset": 3, "soft off": 5}
INVALID_COMMAND = {0xC1, 0xCC}      # completion codes: not supported / invalid data field
PRIVILEGES = {"user": 2, "operator": 3, "administrator": 4}
WAIT_SLICE = 0.5                    # seconds per turn of pyghmi's event loop while logging in
AUTH_ERRORS = ("Incorrect password", "Unauthorized name", "Invalid RAKP4 integrity")


class IpmiDriver(PowerDriver):
    name = "ipmi"
    default_port = 623
    options: ClassVar[dict[str, str]] = {
        "privlvl": "privilege level: administrator (default), operator or user",
        "lanplus": "accepted for fence_ipmilan compatibility; always IPMI 2.0",
        "cipher": "accepted for fence_ipmilan compatibility; pyghmi negotiates the suite",
    }

    async def connect(self, outlet: Outlet, limits: Limits) -> Connection:
        options = self.parse_options(outlet)
        if "lanplus" in options and not truthy(options["lanplus"]):
            raise Misconfigured("IPMI 1.5 (lanplus=0) is not supported")
        privilege = options.get("privlvl", "administrator")
        if privilege not in PRIVILEGES:
            raise Misconfigured(f"privlvl must be one of {', '.join(PRIVILEGES)}")
        connection = IpmiConnection(outlet, outlet.port or self.default_port,
                                    PRIVILEGES[privilege], limits)
        await connection.log_in()
        return connection


class IpmiConnection(Connection):
    """One BMC's session, logged in again if it dies between two calls."""

    def __init__(self, outlet: Outlet, port: int, privilege: int, limits: Limits) -> None:
        self.outlet, self.port, self.privilege, self.limits = outlet, port, privilege, limits
        self.command: ipmi_command.Command | None = None

    async def log_in(self) -> None:
        stop = threading.Event()
        try:
            self.command = await run_blocking(SESSIONS.get, self.outlet, self.port,
                                              self.privilege, self.limits.deadline, stop)
        except asyncio.CancelledError:
            stop.set()          # the login thread gives up at its next turn
            raise

    async def query(self) -> str:
        data = await self._call(CHASSIS_STATUS, (), "the power state request")
        return "on" if data and data[0] & 1 else "off"

    async def on(self) -> None:
        await self._control("on")

    async def off(self) -> None:
        await self._control("off")

    async def soft_off(self) -> None:
        await self._control("soft off")

    async def reset(self) -> None:
        await self._control("reset")

    async def _control(self, what: str) -> None:
        await self._call(CHASSIS_CONTROL, (CONTROL[what],), f"power {what}")

    async def _call(self, command: int, data: tuple[int, ...], what: str) -> Any:
        if self.command is None or not _alive(self.command.ipmi_session):
            await self.log_in()
        assert self.command is not None
        try:
            return await run_blocking(_raw, self.command, command, data, what)
        except asyncio.CancelledError:
            submit_blocking(_abandon, self.command.ipmi_session)
            raise


class _Sessions:
    """Logged-in Commands by (address, port, user name, password, privilege), reused while
    alive. One login at a time per key, so that pyghmi never sees two for the same BMC."""

    LIMIT = 4096        # BMCs remembered; the least recently logged in is given up first

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._commands: dict[tuple, ipmi_command.Command] = {}
        self._logins: dict[tuple, threading.Lock] = {}

    def get(self, outlet: Outlet, port: int, privilege: int, deadline: float,
            stop: threading.Event) -> ipmi_command.Command:
        key = (outlet.address, port, outlet.username, outlet.password, privilege)
        with self._lock:
            login_lock = self._logins.setdefault(key, threading.Lock())
        if not login_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise NoAnswer("another login to this BMC is still waiting")
        try:
            command = self._commands.get(key)
            if command is not None and _alive(command.ipmi_session):
                return command
            if command is not None:
                _abandon(command.ipmi_session)
            command = _login(outlet, port, privilege, deadline, stop)
            # pyghmi lists a finished login as in progress: unlist it (see the docstring).
            ipmi_session.Session.initting_sessions.pop(
                (outlet.address, outlet.username, outlet.password, port, None), None)
            self._remember(key, command)
            return command
        finally:
            login_lock.release()

    def _remember(self, key: tuple, command: ipmi_command.Command) -> None:
        with self._lock:
            self._commands.pop(key, None)
            self._commands[key] = command
            while len(self._commands) > self.LIMIT:
                oldest = next(iter(self._commands))
                _abandon(self._commands.pop(oldest).ipmi_session)
                self._logins.pop(oldest, None)


SESSIONS = _Sessions()


def _login(outlet: Outlet, port: int, privilege: int, deadline: float,
           stop: threading.Event) -> ipmi_command.Command:
    """A logged-in Command, or ``PowerError``; ends by ``deadline`` whatever the BMC does."""
    while True:
        command, error = _attempt_login(outlet, port, privilege, deadline, stop)
        if not error:
            return command
        if any(marker in error for marker in AUTH_ERRORS):
            raise AuthenticationFailed()
        if "privilege" in error or "role" in error:
            raise Misconfigured("the BMC refused the privilege level (see privlvl)", error)
        if error not in ("timeout", "Session failed to initialize"):
            raise PowerError("login failed", error)
        if time.monotonic() >= deadline or stop.is_set():
            raise NoAnswer()
        # pyghmi gave up before the deadline: start a fresh login.


def _attempt_login(outlet: Outlet, port: int, privilege: int, deadline: float,
                   stop: threading.Event) -> tuple[ipmi_command.Command, str | None]:
    """One login in pyghmi's asynchronous mode: (command, pyghmi's error or None)."""
    done, answer = threading.Event(), {}

    def logged(response: dict[str, Any], _command: Any) -> None:
        answer.update(response)
        done.set()

    try:
        command = ipmi_command.Command(bmc=outlet.address, userid=outlet.username,
                                       password=outlet.password, port=port, onlogon=logged,
                                       privlevel=privilege)
    except socket.gaierror as exc:
        raise Misconfigured("cannot resolve the address", str(exc.strerror)) from None
    except pyghmi_errors.IpmiException as exc:
        raise PowerError("login failed", str(exc)) from None
    _turn_until(done, deadline, stop, command)
    return command, answer.get("error")


def _turn_until(done: threading.Event, deadline: float, stop: threading.Event,
                command: ipmi_command.Command) -> None:
    """Turn pyghmi's event loop until the login callback ran; give up at the deadline."""
    while not done.is_set():
        left = deadline - time.monotonic()
        if left <= 0 or stop.is_set():
            _abandon(command.ipmi_session)
            raise NoAnswer()
        ipmi_session.Session.wait_for_rsp(timeout=min(left, WAIT_SLICE))


def _raw(command: ipmi_command.Command, number: int, data: tuple[int, ...],
         what: str) -> Any:
    """One chassis command; its response data, or ``PowerError``."""
    try:
        response = command.raw_command(netfn=0, command=number, data=data)
    except pyghmi_errors.IpmiException as exc:
        raise NoAnswer("session lost", str(exc)) from None
    if not response:
        raise NoAnswer("session lost")
    error = response.get("error")
    if error:
        if response.get("code") == 0xFFFF:
            raise NoAnswer()
        if what == "power soft off" and response.get("code") in INVALID_COMMAND:
            raise Unsupported("refused a graceful shutdown", error)
        raise PowerError(f"refused {what}", error)
    return response.get("data")


def _alive(session: Any) -> bool:
    """Logged in, not broken, and not past pyghmi's own keepalive horizon."""
    return bool(session.logged) and not session.broken \
        and ipmi_session.Session._is_session_valid(session)


def _abandon(session: Any) -> None:
    """Give a session up so that every thread waiting in it returns.

    pyghmi offers no public way to cancel; ``_mark_broken`` is what it calls itself when its
    retries run out (it stops the retransmissions and wakes the waiters)."""
    with contextlib.suppress(Exception):
        session._mark_broken("given up: no answer in time")
