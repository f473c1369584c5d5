"""Power control of nodes through their BMCs or PDUs: one interface, several protocols.

A *driver* speaks one protocol (IPMI with pyghmi, Redfish with sushy, Debian's fence agents)
and opens a *connection* to one outlet. A connection only queries and switches
(``query/on/off/soft_off/reset``). What an operation means — "off" is graceful and then
forced, a switch is read back and a BMC that still reports the old state is an error, every
step is bounded in time — is decided once, in ``agent.power.control``, for all drivers alike.

Errors come in two families, as in MAAS: ``fatal`` ones (wrong credentials, a missing fence
agent, a bad option) are never worth asking again, the others (no answer, a refused command)
may clear up. An error carries its cause (Shepherd's words) and, apart, any ``detail`` taken
from the device or a library; ``control`` adds the device and its address.

The password lives in ``Outlet.password`` (left out of its repr) and goes nowhere else: not
on any command line, not in logs, not in error messages (the ``detail`` of every error is
masked before it leaves this package, since it is text Shepherd did not write).
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import dataclasses
import functools
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")

MASK = "********"
BLOCKING_THREADS = 128      # pyghmi and sushy block: they run here, never on the event loop
OPTION_TOKEN = re.compile(r"^(?:--)?([a-z][a-z0-9_-]*)(?:=(.*))?$")

_pool: concurrent.futures.ThreadPoolExecutor | None = None


@dataclasses.dataclass(frozen=True)
class Outlet:
    """One outlet as the manager describes it (the action's ``outlets`` items)."""

    id: int
    driver: str
    address: str
    port: int | None = None
    username: str = ""
    password: str = dataclasses.field(default="", repr=False)
    identifier: str = ""
    options: str = ""
    fence_agent: str = ""

    @classmethod
    def from_args(cls, item: dict[str, Any]) -> Outlet:
        return cls(**{f.name: item[f.name] for f in dataclasses.fields(cls) if f.name in item})


@dataclasses.dataclass
class Limits:
    """How long one outlet's work may take. ``deadline`` is a ``time.monotonic()`` value (the
    event loop's clock); ``console`` takes lines for the action's console (already masked)."""

    deadline: float
    timeout: float                  # seconds this outlet was given in all, for messages
    action_bound: bool = False      # the action's deadline comes before the outlet's own
    console: Callable[[str], None] = lambda line: None

    def left(self) -> float:
        return self.deadline - time.monotonic()


class PowerError(Exception):
    """An expected failure: ``cause`` without the device or its address, and ``detail``,
    text from the device or a library (masked when shown)."""

    fatal: ClassVar[bool] = False

    def __init__(self, cause: str = "", detail: str = "") -> None:
        super().__init__(cause, detail)
        self.cause, self.detail = cause, detail

    def __str__(self) -> str:
        return self.describe("")

    def describe(self, secret: str) -> str:
        """The message, with ``secret`` masked in the detail."""
        detail = mask(self.detail, secret)
        return f"{self.cause}: {detail}" if self.cause and detail else self.cause or detail


class AuthenticationFailed(PowerError):
    fatal = True

    def __init__(self, detail: str = "") -> None:
        super().__init__("authentication failed (wrong user name or password)", detail)


class Misconfigured(PowerError):
    """The outlet cannot work as described (option, identifier, missing tool)."""

    fatal = True


class NoAnswer(PowerError):
    """The device did not answer in time; ``control`` says how long it waited."""


class Unsupported(PowerError):
    """The device does not offer this (e.g. a graceful shutdown); callers may fall back."""

    fatal = True


class PowerDriver(abc.ABC):
    """One protocol. Subclasses declare the options they understand (name → help)."""

    name: ClassVar[str]
    noun: ClassVar[str] = "BMC"               # what errors call the device
    default_port: ClassVar[int | None] = None
    options: ClassVar[dict[str, str]] = {}

    @abc.abstractmethod
    async def connect(self, outlet: Outlet, limits: Limits) -> Connection:
        """Reach the outlet's device and log in; bounded by ``limits`` (the caller also
        cancels it at the deadline). Raises ``PowerError``."""

    def device(self, outlet: Outlet) -> str:
        """How messages name the device: "BMC", or the fence agent's name."""
        return self.noun

    def where(self, outlet: Outlet) -> str:
        """The address as messages show it: the URL, or host:port (default port if none)."""
        if "://" in outlet.address:
            return outlet.address
        host = f"[{outlet.address}]" if ":" in outlet.address else outlet.address
        port = outlet.port if outlet.port is not None else self.default_port
        return host if port is None else f"{host}:{port}"

    def parse_options(self, outlet: Outlet) -> dict[str, str]:
        """The outlet's options as name → value, refusing names this driver does not know."""
        parsed = parse_options(outlet.options)
        unknown = sorted(set(parsed) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise Misconfigured(f"option {unknown[0]!r} is not understood by the {self.name} "
                                f"driver (it understands: {known})")
        return parsed


class Connection(abc.ABC):
    """An open line to one outlet's device. Every method may be cancelled at any await."""

    @abc.abstractmethod
    async def query(self) -> str:
        """The power state, "on" or "off" (a state in transition counts as the old one)."""

    @abc.abstractmethod
    async def on(self) -> None: ...

    @abc.abstractmethod
    async def off(self) -> None:
        """Forced off, at once."""

    async def soft_off(self) -> None:
        """Ask the operating system to shut down (ACPI); raises ``Unsupported`` if the device
        cannot."""
        raise Unsupported("no graceful shutdown")

    @abc.abstractmethod
    async def reset(self) -> None:
        """Hard reset of a running node."""

    async def close(self) -> None:
        """Release what ``connect`` took; must not block for long."""


def parse_options(text: str) -> dict[str, str]:
    """Space-separated ``name=value``, ``name`` or ``--name[=value]`` tokens → name → value
    (a bare name means "1"; dashes in names become underscores)."""
    options: dict[str, str] = {}
    for token in text.split():
        match = OPTION_TOKEN.match(token)
        if match is None:
            raise Misconfigured(f"option {token!r} is not of the form name=value")
        options[match.group(1).replace("-", "_")] = "1" if match.group(2) is None \
            else match.group(2)
    return options


def truthy(value: str) -> bool:
    return value.lower() in ("1", "yes", "on", "true")


def mask(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced by the mask."""
    return text.replace(secret, MASK) if secret else text


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking library call in the power threads (not asyncio's small default pool:
    64 outlets at once each hold a thread). Cancelling the await does not stop the thread;
    callers bound the library's own timeouts so that it ends soon after."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads(), functools.partial(fn, *args))


def submit_blocking(fn: Callable[..., Any], *args: Any) -> None:
    """Start a blocking clean-up in the power threads without waiting for it."""
    _threads().submit(fn, *args)


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(BLOCKING_THREADS, "power")
    return _pool
