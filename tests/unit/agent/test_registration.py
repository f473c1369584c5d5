"""Onboarding against a loopback fake manager: HTTPS (CA, ports) and gRPC Register, real TLS."""

import contextlib
import http.server
import json
import ssl
import threading
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from agent import identity
from agent.registration import RegistrationError, register
from agent.state import StateDir
from protos import agent_pb2, agent_pb2_grpc
from tests.unit.agent.factories import FakeMachine
from tests.unit.agent.tls import make_ca

AGENT_PORT = 18444


class FakeRegistrar(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, ca):
        self.ca = ca
        self.requests = []
        self.refusal = None

    def Register(self, request, context):
        self.requests.append(request)
        if self.refusal:
            context.abort(*self.refusal)
        return agent_pb2.RegisterResponse(host_id=42, certificate_pem=self.ca.sign_csr(
            request.csr_pem), ca_pem=self.ca.pem)


def _https_server(pki_files, ca_pem, registration_port):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/certificate/":
                body = ca_pem
            elif self.path == "/agent/":
                body = json.dumps({"agent_port": AGENT_PORT,
                                   "registration_port": registration_port}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki_files)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def manager(tmp_path):
    ca = make_ca()
    key_pem, cert_pem = ca.key_pair("localhost", server=True)
    (tmp_path / "server.key").write_bytes(key_pem)
    (tmp_path / "server.crt").write_bytes(cert_pem)
    registrar = FakeRegistrar(ca)
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(registrar, grpc_server)
    port = grpc_server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    grpc_server.start()
    https = _https_server((tmp_path / "server.crt", tmp_path / "server.key"), ca.pem, port)
    registrar.url = f"https://127.0.0.1:{https.server_address[1]}"
    registrar.fingerprint = identity.ca_fingerprint(ca.pem)
    with contextlib.ExitStack() as stack:
        stack.callback(grpc_server.stop, None)
        stack.callback(https.shutdown)
        yield registrar


def do_register(manager, state, fingerprint=None):
    return register(manager.url, "token-secret", fingerprint or manager.fingerprint,
                    ["storage", "bmc"], FakeMachine("oss1.example.com"), state, timeout=5)


def test_registration_stores_identity_and_record(manager, tmp_path):
    state = StateDir(str(tmp_path / "agent"))
    colons = ":".join(manager.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
    record = do_register(manager, state, colons)
    assert (record.host_id, record.fqdn, record.roles) == (42, "oss1.example.com",
                                                          ["storage", "bmc"])
    assert record.agent_address == f"127.0.0.1:{AGENT_PORT}"
    assert state.is_registered() and state.load_record() == record
    (request,) = manager.requests
    assert request.token == "token-secret" and request.protocol_version == 1
    assert request.fqdn == "oss1.example.com" == request.inventory.fqdn
    assert list(request.roles) == ["storage", "bmc"]
    assert request.address == "127.0.0.1"
    csr = x509.load_pem_x509_csr(request.csr_pem)
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "oss1.example.com"
    stored = state.load_identity()
    assert stored.ca_pem == manager.ca.pem
    cert = x509.load_pem_x509_certificate(stored.cert_pem)
    assert cert.public_key() == csr.public_key()
    assert b"PRIVATE KEY" in stored.key_pem and b"PRIVATE KEY" not in request.SerializeToString()


def test_wrong_fingerprint_is_refused_before_anything_is_sent(manager, tmp_path):
    state = StateDir(str(tmp_path / "agent"))
    with pytest.raises(RegistrationError, match="refusing to trust it"):
        do_register(manager, state, "ab" * 32)
    assert manager.requests == [] and not state.is_registered()


@pytest.mark.parametrize(("code", "details", "message"), [
    (grpc.StatusCode.PERMISSION_DENIED, "token expired", "registration refused: token expired"),
    (grpc.StatusCode.ALREADY_EXISTS, "live host 3",
     "oss1.example.com is already registered to a live host: live host 3"),
    (grpc.StatusCode.INVALID_ARGUMENT, "bad CSR", "registration rejected as invalid: bad CSR"),
    (grpc.StatusCode.INTERNAL, "boom", "registration failed: INTERNAL: boom"),
])
def test_refusals_are_one_line_and_write_nothing(manager, tmp_path, code, details, message):
    manager.refusal = (code, details)
    state = StateDir(str(tmp_path / "agent"))
    with pytest.raises(RegistrationError) as raised:
        do_register(manager, state)
    assert str(raised.value) == message
    assert not state.is_registered()


def test_unreachable_manager_is_a_clear_error(tmp_path):
    with pytest.raises(RegistrationError, match=r"cannot fetch https://127\.0\.0\.1:1/certif"):
        register("https://127.0.0.1:1", "t", "ab" * 32, ["compute"], FakeMachine(),
                 StateDir(str(tmp_path)), timeout=2)


def test_plain_http_manager_url_is_refused(tmp_path):
    with pytest.raises(RegistrationError, match="must be an https:// URL"):
        register("http://mgr:8443", "t", "ab" * 32, ["compute"], FakeMachine(),
                 StateDir(str(tmp_path)), timeout=2)


def test_unwritable_state_dir_fails_before_the_token_is_spent(manager, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RegistrationError, match="cannot create directory"):
        do_register(manager, StateDir(str(blocker / "agent")))
    assert manager.requests == []
