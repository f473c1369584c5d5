"""Onboarding: trade a registration token and a CSR for a certificate signed by the manager.

The flow the proto's header describes, in order:

1. GET {manager}/certificate/ without verification (there is nothing to verify with yet) and
   refuse unless the SHA-256 of its DER equals the fingerprint the admin supplied;
2. GET {manager}/agent/ verified with that pinned CA: ``{"agent_port": N}`` (and, from
   managers that serve Register on a port of its own, ``"registration_port": R``);
3. ``Register`` over TLS to the manager's host, port R (else N), verified with the pinned CA.
   The stream (``run``) later connects to port N with the issued certificate.

Only then is anything written: key, certificate and CA together, then agent.json. Every
failure is a ``RegistrationError`` with a one-line message; the token is never logged.
"""

from __future__ import annotations

import datetime
import socket
import tempfile
import urllib.parse
import warnings
from collections.abc import Sequence

import grpc
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from urllib3.exceptions import InsecureRequestWarning

from agent import __version__, identity, inventory
from agent.actions import Machine
from agent.protocol import PROTOCOL_VERSION
from agent.state import AgentRecord, Identity, StateDir, StateError
from protos import agent_pb2, agent_pb2_grpc

_REFUSALS = {
    grpc.StatusCode.PERMISSION_DENIED: "registration refused: {details}",
    grpc.StatusCode.INVALID_ARGUMENT: "registration rejected as invalid: {details}",
    grpc.StatusCode.ALREADY_EXISTS: "{fqdn} is already registered to a live host: {details}",
    grpc.StatusCode.UNAVAILABLE: "cannot reach the manager's agent service at {target}: "
                                 "{details}",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer from {target} within {timeout:g} s",
}


class RegistrationError(Exception):
    """Registration did not happen; the message says why in one line."""


def register(manager_url: str, token: str, ca_sha256: str, roles: Sequence[str],
             machine: Machine, state: StateDir, timeout: float) -> AgentRecord:
    """Register this machine with the manager and store the new identity in ``state``.

    Touches the network (the manager's HTTPS and agent ports) and, on success only, the
    state directory. Consumes one credit of the token on the manager.
    """
    base = _base_url(manager_url)
    try:
        state.prepare()
    except StateError as exc:
        raise RegistrationError(f"{exc} (the token was not used)") from exc
    session = requests.Session()
    session.trust_env = False  # no proxies or CA bundles from the environment
    ca_pem = fetch_pinned_ca(session, base, ca_sha256, timeout)
    connect_port, register_port = agent_ports(session, base, ca_pem, timeout)
    key = identity.new_key()
    request = _request(token, key, roles, machine, base)
    response = _call_register(_grpc_target(base, register_port), ca_pem, request, timeout)
    _check_response(response, key, ca_pem)
    record = AgentRecord(manager_url=base, agent_address=_grpc_target(base, connect_port),
                         host_id=response.host_id, fqdn=machine.fqdn, roles=list(roles),
                         registered_at=datetime.datetime.now(datetime.UTC).isoformat())
    try:
        state.save_registration(Identity(identity.key_pem(key), response.certificate_pem,
                                         ca_pem), record)
    except StateError as exc:
        raise RegistrationError(f"registered as host {response.host_id}, but {exc}") from exc
    return record


def _request(token: str, key: ec.EllipticCurvePrivateKey, roles: Sequence[str],
             machine: Machine, base: str) -> agent_pb2.RegisterRequest:
    return agent_pb2.RegisterRequest(
        protocol_version=PROTOCOL_VERSION, token=token,
        csr_pem=identity.make_csr(key, machine.fqdn), fqdn=machine.fqdn,
        nodename=socket.gethostname(), roles=list(roles), version=__version__,
        inventory=inventory.to_message(machine.inventory()), address=_local_address(base))


def _base_url(manager_url: str) -> str:
    parts = urllib.parse.urlsplit(manager_url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise RegistrationError(f"--manager must be an https:// URL, not {manager_url!r}")
    return f"https://{parts.netloc}"


def fetch_pinned_ca(session: requests.Session, base: str, ca_sha256: str,
                    timeout: float) -> bytes:
    """The manager's CA certificate (PEM), only if its fingerprint is ``ca_sha256``."""
    try:
        identity.normalize_fingerprint(ca_sha256)
        with warnings.catch_warnings():
            # Unverified on purpose: the fingerprint check below is the verification.
            warnings.simplefilter("ignore", InsecureRequestWarning)
            response = session.get(f"{base}/certificate/", verify=False, timeout=timeout)
        ca_pem = _ok(response).content
        identity.check_pinned(ca_pem, ca_sha256)
    except identity.FingerprintError as exc:
        raise RegistrationError(str(exc)) from exc
    except requests.RequestException as exc:
        raise RegistrationError(f"cannot fetch {base}/certificate/: {_first_line(exc)}") \
            from exc
    return ca_pem


def agent_ports(session: requests.Session, base: str, ca_pem: bytes,
                timeout: float) -> tuple[int, int]:
    """``(agent_port, registration_port)`` from GET /agent/, verified with the pinned CA.

    Register goes to ``registration_port`` when the manager gives one (a TLS port that asks
    for no client certificate), else to ``agent_port`` as the proto's header describes.
    """
    url = f"{base}/agent/"
    with tempfile.NamedTemporaryFile(suffix=".pem") as bundle:
        bundle.write(ca_pem)
        bundle.flush()
        try:
            info = _ok(session.get(url, verify=bundle.name, timeout=timeout)).json()
        except requests.exceptions.SSLError as exc:
            raise RegistrationError(f"{base} does not present a certificate from the pinned "
                                    f"CA for this name: {_first_line(exc)}") from exc
        except requests.RequestException as exc:
            raise RegistrationError(f"cannot fetch {url}: {_first_line(exc)}") from exc
        except ValueError as exc:
            raise RegistrationError(f"{url} did not answer JSON") from exc
    connect = _port(info, "agent_port", url)
    return connect, _port(info, "registration_port", url) if "registration_port" in info \
        else connect


def _port(info: object, name: str, url: str) -> int:
    port = info.get(name) if isinstance(info, dict) else None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RegistrationError(f"{url} gave no valid {name}: {port!r}")
    return port


def _ok(response: requests.Response) -> requests.Response:
    if response.status_code != 200:
        raise requests.HTTPError(f"HTTP {response.status_code}", response=response)
    return response


def _grpc_target(base: str, port: int) -> str:
    host = urllib.parse.urlsplit(base).hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _local_address(base: str) -> str:
    """The local IP address this machine uses to reach the manager ("" if unroutable)."""
    parts = urllib.parse.urlsplit(base)
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(parts.hostname, parts.port or 443,
                                                       proto=socket.IPPROTO_UDP)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)  # UDP connect only picks a route; nothing is sent
            return probe.getsockname()[0]
    except OSError:
        return ""


def _call_register(target: str, ca_pem: bytes, request: agent_pb2.RegisterRequest,
                   timeout: float) -> agent_pb2.RegisterResponse:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    with grpc.secure_channel(target, credentials, options=[("grpc.enable_retries", 0)]) as ch:
        try:
            return agent_pb2_grpc.AgentServiceStub(ch).Register(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise RegistrationError(_refusal(exc, target, request.fqdn, timeout)) from None


def _refusal(exc: grpc.RpcError, target: str, fqdn: str, timeout: float) -> str:
    code, details = exc.code(), _first_line(exc.details() or "")
    template = _REFUSALS.get(code, "registration failed: {code}: {details}")
    return template.format(code=code.name, details=details, target=target, fqdn=fqdn,
                           timeout=timeout)


def _check_response(response: agent_pb2.RegisterResponse, key: ec.EllipticCurvePrivateKey,
                    ca_pem: bytes) -> None:
    """The certificate must carry our public key, and the CA must be the pinned one."""
    try:
        cert = x509.load_pem_x509_certificate(response.certificate_pem)
    except ValueError as exc:
        raise RegistrationError(f"the manager returned an unreadable certificate: {exc}") \
            from exc
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise RegistrationError("the manager returned a certificate for another key")
    if response.ca_pem and identity.ca_fingerprint(response.ca_pem) != \
            identity.ca_fingerprint(ca_pem):
        raise RegistrationError("the manager returned a CA other than the pinned one")


def _spki(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__

