"""Redfish power control with sushy (the DMTF REST API of current BMCs).

sushy blocks (requests underneath): its calls run in the power threads. Each call's HTTP
timeouts are set from what is left of the outlet's time, and sushy's retries are turned off
(by default it retries a failed GET ten times, 3 s apart), so that a thread left behind by a
cancelled call ends soon after. The outlet's ``identifier`` names the ComputerSystem (its id,
or its URI); empty means the BMC's only system.

Authentication is HTTP Basic by default: a poller that opened a Redfish session per request
would double the requests and use up the few session slots BMCs have. ``auth=session`` or
``auth=auto`` (session, falling back to basic) are there for BMCs that refuse Basic.
Certificates are verified unless ``ssl_insecure=1`` (BMCs often have self-signed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

import requests
import sushy
import urllib3
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_errors

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
    truthy,
)

ROOT = "/redfish/v1/"
CONNECT_TIMEOUT = 10.0          # seconds, at most, for the TCP (and TLS) handshake
STATES = {sushy.POWER_STATE_ON: "on", sushy.POWER_STATE_POWERING_OFF: "on",
          sushy.POWER_STATE_OFF: "off", sushy.POWER_STATE_POWERING_ON: "off"}
AUTH = {"basic": sushy_auth.BasicAuth, "session": sushy_auth.SessionAuth,
        "auto": sushy_auth.SessionOrBasicAuth}


class RedfishDriver(PowerDriver):
    name = "redfish"
    default_port = 443
    options: ClassVar[dict[str, str]] = {"ssl_insecure": "1: do not verify the BMC's certificate",
                                         "auth": "basic (default), session or auto"}

    async def connect(self, outlet: Outlet, limits: Limits) -> Connection:
        options = self.parse_options(outlet)
        mode = options.get("auth", "basic")
        if mode not in AUTH:
            raise Misconfigured(f"auth must be one of {', '.join(AUTH)}")
        verify = not truthy(options.get("ssl_insecure", "0"))
        if not verify:      # asked for: do not warn about it on every request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        system, auth = await run_blocking(_open, base_url(outlet, self.default_port),
                                          outlet, AUTH[mode], verify, limits.left())
        return RedfishConnection(system, auth)


class RedfishConnection(Connection):
    def __init__(self, system: Any, auth: Any) -> None:
        self.system, self.auth = system, auth

    async def query(self) -> str:
        state = await run_blocking(_sushy, _refreshed_state, self.system)
        if state not in STATES:
            raise PowerError("reports an unexpected power state", repr(state))
        return STATES[state]

    async def on(self) -> None:
        await self._reset(sushy.RESET_ON)

    async def off(self) -> None:
        await self._reset(sushy.RESET_FORCE_OFF)

    async def soft_off(self) -> None:
        await self._reset(sushy.RESET_GRACEFUL_SHUTDOWN)

    async def reset(self) -> None:
        await self._reset(sushy.RESET_FORCE_RESTART)

    async def close(self) -> None:
        await asyncio.shield(run_blocking(_logout, self.auth))

    async def _reset(self, value: Any) -> None:
        await run_blocking(_sushy, _reset_system, self.system, value)


def base_url(outlet: Outlet, default_port: int) -> str:
    """``https://address[:port]``, or the address itself when it is already a URL."""
    if "://" in outlet.address:
        return outlet.address.rstrip("/")
    host = f"[{outlet.address}]" if ":" in outlet.address else outlet.address
    port = outlet.port if outlet.port is not None else default_port
    return f"https://{host}" if port == 443 else f"https://{host}:{port}"


def _open(url: str, outlet: Outlet, auth_class: type, verify: bool,
          timeout: float) -> tuple[Any, Any]:
    auth = auth_class(username=outlet.username, password=outlet.password)
    timeout = max(1.0, timeout)
    try:
        root = _sushy(sushy.Sushy, url, auth=auth, verify=verify, root_prefix=ROOT,
                      server_side_retries=1, read_timeout=timeout,
                      connect_timeout=min(timeout, CONNECT_TIMEOUT))
        return _sushy(root.get_system, _system_path(outlet.identifier)), auth
    except PowerError:
        _logout(auth)       # a Redfish session may have been opened before the failure
        raise


def _system_path(identifier: str) -> str | None:
    if not identifier:
        return None
    return identifier if identifier.startswith("/") else f"{ROOT}Systems/{identifier}"


def _refreshed_state(system: Any) -> Any:
    system.refresh(force=True)
    return system.power_state


def _reset_system(system: Any, value: Any) -> None:
    if value not in system.get_allowed_reset_system_values():
        if value == sushy.RESET_GRACEFUL_SHUTDOWN:
            raise Unsupported("offers no graceful shutdown")
        raise PowerError("does not offer the reset type", value.value)
    system.reset_system(value)


def _logout(auth: Any) -> None:
    if isinstance(auth, sushy_auth.BasicAuth):
        return
    with contextlib.suppress(Exception):
        auth.close()
    # Whatever happened, forget the session, so sushy's __del__ (which may run on the event
    # loop's thread) has nothing left to send.
    with contextlib.suppress(Exception):
        auth.reset_session_attrs()


def _sushy(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call sushy, turning its exceptions into ``PowerError``s worth reading."""
    try:
        return fn(*args, **kwargs)
    except sushy_errors.AccessError:
        raise AuthenticationFailed() from None
    except sushy_errors.UnknownDefaultError:
        raise Misconfigured("the BMC has several systems: set the outlet's identifier to "
                            "one of them") from None
    except sushy_errors.ResourceNotFoundError:
        raise Misconfigured("no such system (check the outlet's identifier)") from None
    except sushy_errors.ConnectionError as exc:
        raise _connection_error(exc) from None
    except sushy_errors.HTTPError as exc:
        raise PowerError(f"HTTP {exc.status_code}", str(exc.detail or exc.code)) from None
    except sushy_errors.SushyError as exc:
        raise PowerError("Redfish error", str(exc)) from None


def _connection_error(exc: sushy_errors.ConnectionError) -> PowerError:
    cause = exc.__context__         # the requests exception sushy wrapped
    if isinstance(cause, requests.exceptions.SSLError):
        return Misconfigured("TLS handshake failed (set ssl_insecure=1 for a self-signed "
                             "certificate)")
    if isinstance(cause, requests.exceptions.Timeout):
        return NoAnswer()
    text = str(cause or exc)
    if "Connection refused" in text:
        return PowerError("connection refused")
    if "NameResolutionError" in text or "Name or service not known" in text:
        return Misconfigured("cannot resolve the address")
    return PowerError("cannot connect", text.strip().splitlines()[-1][:200])
