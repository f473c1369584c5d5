"""Two fixes to pyghmi 1.6.19 (pinned) that the IPMI driver needs; ``agent.power.ipmi``'s
docstring says what goes wrong without them. Nothing else in Shepherd patches pyghmi."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from pyghmi import exceptions as pyghmi_errors
from pyghmi.ipmi.private import session as ipmi_session

_blocking_request_privilege = ipmi_session.Session._req_priv_level


def _request_privilege(session: Any) -> None:
    """pyghmi's last login step (Set Session Privilege Level) without blocking its loop.

    The same exchange and outcomes as pyghmi's own: administrator refused with 0x80/0x81 is
    asked again as operator; success registers the keepalive and calls ``onlogon``."""
    if not session.async_:
        _blocking_request_privilege(session)
        return
    session.logged = 1
    session.logoutexpiry = None
    session.maxtimeout = 4          # pyghmi's values: quick switch to its relogin recovery
    session.logontries = 1

    def ask() -> None:
        session.raw_command(netfn=0x6, command=0x3B, data=[session.privlevel],
                            callback=answered)

    def answered(response: dict[str, Any]) -> None:
        session.incommand = False
        code = response.get("code")
        if code in (0x80, 0x81) and session.privlevel == 4:
            session.privlevel = 3
            ask()
            return
        if code:
            session.logged = 0
            session.onlogpayload = None
            session.logging = False
            session.onlogon({"error": ipmi_session.get_ipmi_error(
                response, suffix=f" while requesting privilege level {session.privlevel}")
                or f"privilege level {session.privlevel} refused"})
            return
        session.logging = False
        with ipmi_session.util.protect(ipmi_session.KEEPALIVE_SESSIONS):
            ipmi_session.Session.keepalive_sessions[session] = {
                "ipmisession": session,
                "timeout": ipmi_session._monotonic_time() + ipmi_session.MAX_IDLE - 5}
        session.onlogon({"success": True})

    try:
        ask()
    except pyghmi_errors.IpmiException as exc:
        session.onlogon({"error": str(exc)})


def use_socket_flags() -> None:
    """Make pyghmi's reads non-blocking by flag, and its sends leave the socket's mode alone
    (see the module docstring of ``agent.power.ipmi``). Also used by the virtual BMCs of the tests."""

    def receive(sock: socket.socket, size: int) -> tuple[bytes, Any] | None:
        try:
            return sock.recvfrom(size, socket.MSG_DONTWAIT)
        except OSError:
            return None

    def send(sock: socket.socket, packet: bytes, address: Any) -> None:
        with contextlib.suppress(OSError):
            sock.sendto(packet, address)

    ipmi_session._io_recvfrom = receive
    ipmi_session._io_sendto = send


def apply() -> None:
    """Both fixes, for the IPMI driver (idempotent)."""
    ipmi_session.Session._req_priv_level = _request_privilege
    use_socket_flags()
