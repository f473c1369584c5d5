"""IPMI 2.0 (RMCP+, "lanplus") power control with pyghmi.

pyghmi keeps process-wide session tables fed by one IO thread, and its blocking calls turn its
event loop from whichever thread makes them. Used from many threads at once (one per outlet)
it loses answers: with 60 BMCs at once some sessions never heard back. So every pyghmi call
here runs on **one thread**, the reactor, in pyghmi's asynchronous mode (``onlogon`` and
``raw_command(callback=…)``); the reactor turns pyghmi's event loop and enforces deadlines, and
asyncio callers wait on futures. One BMC has one session and one request in flight at a time;
a sweep of many BMCs is many sessions in flight at once on that one thread.

pyghmi's habits (1.6.19) that shape this module:

- A login can retry for ever: when a BMC ignores RAKP1 (pyghmi's own BMC server does, for an
  unknown user), pyghmi starts the login again without end. The reactor gives a login up at
  its deadline; a login pyghmi gives up on (after ~5 s of silence) is started again while
  time is left, so "no answer within N s" means N seconds.
- Its own session sharing lists a finished login as still in progress; a later ``Command``
  for the same BMC would wait on it for ever. Logged-in sessions are kept here, one per BMC,
  port and credentials, reused while pyghmi deems them alive (it sends keepalives while its
  loop turns), and pyghmi's stale entry is removed after each login.
- A reused session can be silent: the BMC restarted, or forgot the session. A request on a
  reused session gets a short budget; on silence the session is dropped and the request runs
  again on a fresh login within what is left of the outlet's time.
- Its "asynchronous" login still ends with one blocking exchange (Set Session Privilege
  Level, inside the RAKP4 handler), which on one thread serialises every login behind the
  round trips of the others: 500 BMCs logging in at once took minutes. ``pyghmi_fixes``
  replaces that step, for asynchronous sessions only, by the same exchange with a callback.
- Its IO thread reads a socket after switching it to non-blocking, and its senders switch
  the same socket back to blocking before each send; when a send lands between the two, the
  IO thread blocks in ``recvfrom`` on that one socket until a packet happens to come, and
  every BMC waits (seen here as stalls of 0.5 s to 25 s, on the client and in pyghmi's BMC
  server alike). ``pyghmi_fixes`` makes both use per-call flags and never switch.
- Giving a session up (``_abandon``) uses pyghmi's ``_mark_broken``, which logs out; its
  logout waits for a request in flight unless that request is first marked done.

Chassis status and chassis control go out as the plain IPMI commands (netfn 0, commands 1 and
2), as ipmitool sends them; pyghmi's ``get_power``/``set_power`` helpers would first identify
the BMC's vendor and read the state again before switching (more round trips per outlet).
The private pyghmi names this needs are used in ``_Reactor``, ``_alive``, ``_abandon`` and
``agent.power.pyghmi_fixes`` only (pyghmi is pinned).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
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
    pyghmi_fixes,
    truthy,
)

log = logging.getLogger(__name__)

CHASSIS_STATUS, CHASSIS_CONTROL = 0x01, 0x02            # netfn 0 (chassis)
CONTROL = {"off": 0, "on": 1, "reset": 3, "soft off": 5}
INVALID_COMMAND = {0xC1, 0xCC}      # completion codes: not supported / invalid data field
PRIVILEGES = {"user": 2, "operator": 3, "administrator": 4}
AUTH_ERRORS = ("Incorrect password", "Unauthorized name", "Invalid RAKP4 integrity")
TURN = 0.005            # seconds per turn of pyghmi's loop while requests are in flight
IDLE_TURN = 1.0         # while none are (keepalives of idle sessions still go out)
REUSED_BUDGET = 3.0     # seconds a reused session has to answer before it is dropped


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
    """One BMC's session (shared with other actions on the same BMC), logged in again if it
    dies or falls silent between two calls."""

    def __init__(self, outlet: Outlet, port: int, privilege: int, limits: Limits) -> None:
        self.outlet, self.limits = outlet, limits
        self.key = _Key(outlet.address, port, outlet.username, outlet.password, privilege)
        self.fresh = False      # the session was logged in by this connection

    async def log_in(self) -> None:
        self.fresh = await REACTOR.request(_Request(self.key, self.limits.deadline))

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

    async def _call(self, number: int, data: tuple[int, ...], what: str) -> Any:
        deadline = self.limits.deadline
        if not self.fresh:
            deadline = min(deadline, time.monotonic() + REUSED_BUDGET)
        try:
            response = await REACTOR.request(_Request(self.key, deadline, (number, data)))
        except (NoAnswer, _SessionLost) as exc:
            # A session lost under the call (another action gave it up) is logged in again;
            # silence on a session this connection logged in itself is the BMC's answer.
            silent = isinstance(exc, NoAnswer)
            if (silent and self.fresh) or self.limits.left() <= 0:
                raise NoAnswer() from None
            log.debug("ipmi: the session to %s %s; logging in again", self.outlet.address,
                      "fell silent" if silent else "was lost")
            REACTOR.drop(self.key)
            await self.log_in()
            response = await REACTOR.request(
                _Request(self.key, self.limits.deadline, (number, data)))
        self.fresh = False      # a later call on this session must answer like a reused one
        return _interpret(response, what)


# --- the reactor: the one thread that calls pyghmi --------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Key:
    address: str
    port: int
    username: str
    password: str = dataclasses.field(repr=False)
    privilege: int


class _SessionLost(Exception):
    """The session broke (or was given up) under a request: log in again."""


@dataclasses.dataclass(eq=False)
class _Request:
    """A login (``raw`` None) or one raw chassis command; resolved on the reactor."""

    key: _Key
    deadline: float
    raw: tuple[int, tuple[int, ...]] | None = None
    future: asyncio.Future | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def resolve(self, value: Any = None, error: BaseException | None = None) -> None:
        if self.loop is None or self.future is None:
            return
        with contextlib.suppress(RuntimeError):      # the event loop is gone
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)

    @property
    def cancelled(self) -> bool:
        return self.future is not None and self.future.cancelled()


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class _Bmc:
    """One BMC's session and its waiting requests (reactor thread only)."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.command: ipmi_command.Command | None = None
        self.waiting: collections.deque[_Request] = collections.deque()
        self.current: _Request | None = None        # the login or command in flight
        self.attempt = 0                            # tells a stale login callback apart
        self.last_used = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.command is not None and _alive(self.command.ipmi_session)

    def give_up_session(self) -> None:
        if self.command is not None:
            _abandon(self.command.ipmi_session)
            self.command = None


class _Reactor:
    """Runs every pyghmi call on one thread; asyncio callers ``await request(...)``."""

    LIMIT = 4096        # sessions kept; the least recently used idle ones are given up first

    def __init__(self) -> None:
        self._inbox: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._bmcs: collections.OrderedDict[_Key, _Bmc] = collections.OrderedDict()
        self._busy: set[_Bmc] = set()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    async def request(self, request: _Request) -> Any:
        """The outcome of ``request``: True/False (login: fresh or reused) or the response."""
        request.loop = asyncio.get_running_loop()
        request.future = request.loop.create_future()
        self._post(lambda: self._submit(request))
        try:
            return await request.future
        except asyncio.CancelledError:
            self._post(lambda: self._cancel(request))
            raise

    def drop(self, key: _Key) -> None:
        """Give up the session of ``key`` (it fell silent) unless a request is using it."""
        self._post(lambda: self._drop(key))

    def _post(self, call: Callable[[], None]) -> None:
        self._inbox.put(call)
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="ipmi",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                self._inbox.get(timeout=TURN if self._busy else IDLE_TURN)()
                while True:
                    self._inbox.get_nowait()()
            except queue.Empty:
                pass
            except Exception:
                log.exception("ipmi: reactor call failed")
            try:
                ipmi_session.Session.wait_for_rsp(timeout=TURN if self._busy else 0)
            except Exception:
                log.exception("ipmi: pyghmi's event loop failed")
            self._expire()

    # everything below runs on the reactor thread

    def _submit(self, request: _Request) -> None:
        bmc = self._bmcs.get(request.key)
        if bmc is None:
            bmc = self._bmcs[request.key] = _Bmc(request.key)
            self._forget_idle()
        self._bmcs.move_to_end(request.key)
        bmc.waiting.append(request)
        self._pump(bmc)

    def _cancel(self, request: _Request) -> None:
        bmc = self._bmcs.get(request.key)
        if bmc is None:
            return
        if bmc.current is request:
            self._fail_current(bmc, None)
        elif request in bmc.waiting:
            bmc.waiting.remove(request)

    def _drop(self, key: _Key) -> None:
        bmc = self._bmcs.get(key)
        if bmc is not None and bmc.current is None:
            bmc.give_up_session()

    def _pump(self, bmc: _Bmc) -> None:
        """Start the next waiting request of ``bmc`` if none is in flight."""
        while bmc.current is None and bmc.waiting:
            request = bmc.waiting.popleft()
            if request.cancelled:
                continue
            if time.monotonic() >= request.deadline:
                request.resolve(error=NoAnswer())
                continue
            bmc.last_used = time.monotonic()
            if request.raw is None:
                if bmc.alive:
                    request.resolve(False)
                    continue
                self._start_login(bmc, request)
            elif not bmc.alive:
                request.resolve(error=_SessionLost())
                continue
            elif bmc.command.ipmi_session._isincommand():
                # pyghmi's own keepalive is in flight; its raw_command would block for it.
                bmc.waiting.appendleft(request)
                break
            else:
                self._start_command(bmc, request)
        if bmc.current is None and not bmc.waiting:
            self._busy.discard(bmc)
        else:
            self._busy.add(bmc)

    def _start_login(self, bmc: _Bmc, request: _Request) -> None:
        bmc.give_up_session()
        bmc.current = request
        bmc.attempt += 1
        attempt, key = bmc.attempt, bmc.key

        def logged(response: dict[str, Any], _command: Any = None) -> None:
            if bmc.attempt == attempt and bmc.current is request:
                self._logged(bmc, request, response.get("error"))

        try:
            bmc.command = ipmi_command.Command(
                bmc=key.address, userid=key.username, password=key.password,
                port=key.port, onlogon=logged, privlevel=key.privilege)
        except socket.gaierror as exc:
            self._finish(bmc, error=Misconfigured("cannot resolve the address",
                                                  str(exc.strerror)))
        except pyghmi_errors.IpmiException as exc:
            self._finish(bmc, error=PowerError("login failed", str(exc)))

    def _logged(self, bmc: _Bmc, request: _Request, error: str | None) -> None:
        key = bmc.key
        # pyghmi lists a finished login as in progress: unlist it (see the docstring).
        ipmi_session.Session.initting_sessions.pop(
            (key.address, key.username, key.password, key.port, None), None)
        if not error:
            self._finish(bmc, True)
            return
        bmc.give_up_session()
        if any(marker in error for marker in AUTH_ERRORS):
            self._finish(bmc, error=AuthenticationFailed())
        elif "privilege" in error or "role" in error:
            self._finish(bmc, error=Misconfigured(
                "the BMC refused the privilege level (see privlvl)", error))
        elif error not in ("timeout", "Session failed to initialize"):
            self._finish(bmc, error=PowerError("login failed", error))
        elif time.monotonic() >= request.deadline:
            self._finish(bmc, error=NoAnswer())
        else:
            self._start_login(bmc, request)     # pyghmi gave up before the deadline

    def _start_command(self, bmc: _Bmc, request: _Request) -> None:
        assert bmc.command is not None and request.raw is not None
        session = bmc.command.ipmi_session
        bmc.current = request
        number, data = request.raw

        def answered(response: dict[str, Any]) -> None:
            session.incommand = False
            while session.evq:
                session.evq.popleft().set()
            if bmc.current is request:
                self._finish(bmc, response)

        try:
            session.raw_command(netfn=0, command=number, data=data, callback=answered)
        except pyghmi_errors.IpmiException:
            session.incommand = False
            bmc.give_up_session()
            self._finish(bmc, error=_SessionLost())

    def _finish(self, bmc: _Bmc, value: Any = None, error: BaseException | None = None) -> None:
        request, bmc.current = bmc.current, None
        if request is not None:
            request.resolve(value, error)
        self._pump(bmc)

    def _fail_current(self, bmc: _Bmc, error: BaseException | None) -> None:
        """End the request in flight without its answer: its session is given up."""
        if bmc.command is not None:
            bmc.command.ipmi_session.incommand = False
        bmc.give_up_session()
        bmc.attempt += 1
        self._finish(bmc, error=error)

    def _expire(self) -> None:
        """End what ran out of time; start what waited for pyghmi's keepalive."""
        now = time.monotonic()
        for bmc in list(self._busy):
            if bmc.current is not None and now >= bmc.current.deadline:
                self._fail_current(bmc, NoAnswer())
            for request in [r for r in bmc.waiting if now >= r.deadline]:
                bmc.waiting.remove(request)
                request.resolve(error=NoAnswer())
            self._pump(bmc)

    def _forget_idle(self) -> None:
        while len(self._bmcs) > self.LIMIT:
            oldest = next((b for b in self._bmcs.values()
                           if b.current is None and not b.waiting), None)
            if oldest is None:
                return
            oldest.give_up_session()
            del self._bmcs[oldest.key]


REACTOR = _Reactor()


def _interpret(response: dict[str, Any] | None, what: str) -> Any:
    """A chassis command's response data, or ``PowerError``."""
    if not response:
        raise NoAnswer("session lost")
    error = response.get("error") or ipmi_session.get_ipmi_error(response)
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
    """Give a session up so that pyghmi stops retrying it.

    pyghmi offers no public way to cancel; ``_mark_broken`` is what it calls itself when its
    retries run out. Its logout must not wait for a command in flight (``incommand``)."""
    session.incommand = False
    with contextlib.suppress(Exception):
        session._mark_broken("given up: no answer in time")


pyghmi_fixes.apply()
