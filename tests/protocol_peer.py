"""A minimal peer of the agent protocol for manager-side tests: registers with a token and
holds a Connect stream, answering actions the way a test tells it to. It speaks the real
protocol over real TLS; the real agent's own behaviour is tested with the real agent."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protos import agent_pb2, agent_pb2_grpc


@dataclasses.dataclass
class Identity:
    host_id: int
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


def make_csr(fqdn: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fqdn)]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


async def register(address: str, ca_pem: bytes, token: str, fqdn: str,
                   roles: tuple[str, ...] = (), csr_pem: bytes | None = None) -> Identity:
    key_pem, csr = make_csr(fqdn)
    creds = grpc.ssl_channel_credentials(ca_pem)
    async with grpc.aio.secure_channel(address, creds) as channel:
        response = await agent_pb2_grpc.AgentServiceStub(channel).Register(
            agent_pb2.RegisterRequest(protocol_version=1, token=token, csr_pem=csr_pem or csr,
                                      fqdn=fqdn, nodename=fqdn.split(".")[0], roles=list(roles),
                                      version="test"), timeout=10)
    return Identity(response.host_id, key_pem, response.certificate_pem, response.ca_pem)


Handler = Callable[[agent_pb2.ActionRequest], agent_pb2.ActionResult | None]


def echo(request: agent_pb2.ActionRequest) -> agent_pb2.ActionResult:
    """Answer like a healthy agent: the set-up actions as a real one would, and any other
    action with its own arguments echoed back."""
    args = json.loads(request.args_json)
    if request.name == "host.validate":
        result = {"checks": [], "time": time.time(), "ntp_synchronized": True}
    elif request.name == "report.inventory":
        result = {"cpu_count": 2, "architecture": "x86_64", "boot_time": int(time.time()) - 60}
    else:
        result = {"echo": args}
    return agent_pb2.ActionResult(action_id=request.action_id, success=True,
                                  result_json=json.dumps(result))


class Peer:
    """One Connect stream; ``handler`` answers each ActionRequest (None: no answer)."""

    def __init__(self, address: str, identity: Identity, handler: Handler = echo,
                 running: tuple[str, ...] = ()) -> None:
        self.address = address
        self.identity = identity
        self.handler = handler
        self.running = running  # the Hello's running_action_ids
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.received: list[agent_pb2.ManagerMessage] = []
        self.welcome = asyncio.Event()

    def send(self, **body) -> None:
        self.outbox.put_nowait(agent_pb2.AgentMessage(protocol_version=1, **body))

    async def _messages(self):
        yield agent_pb2.AgentMessage(protocol_version=1, hello=agent_pb2.Hello(
            version="test", running_action_ids=self.running))
        while True:
            message = await self.outbox.get()
            if message is None:
                return
            yield message

    async def run(self) -> None:
        creds = grpc.ssl_channel_credentials(self.identity.ca_pem, self.identity.key_pem,
                                             self.identity.cert_pem)
        async with grpc.aio.secure_channel(self.address, creds) as channel:
            stream = agent_pb2_grpc.AgentServiceStub(channel).Connect(self._messages())
            await self._receive(stream)

    async def _receive(self, stream) -> None:
        async for message in stream:
            self.received.append(message)
            kind = message.WhichOneof("body")
            if kind == "welcome":
                self.welcome.set()
            elif kind == "action_request":
                result = self.handler(message.action_request)
                if result is not None:
                    self.send(action_result=result)

    def close(self) -> None:
        self.outbox.put_nowait(None)


@contextlib.asynccontextmanager
async def connected(address: str, identity: Identity, handler: Handler = echo,
                    running: tuple[str, ...] = ()):
    """A Peer whose stream is up (Welcome received) for the block, closed cleanly after."""
    peer = Peer(address, identity, handler, running)
    task = asyncio.create_task(peer.run())
    try:
        await asyncio.wait_for(peer.welcome.wait(), 10)
        yield peer
    finally:
        peer.close()
        await task
