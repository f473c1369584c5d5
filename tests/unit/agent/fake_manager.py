"""A fake manager for agent tests: a grpc.aio servicer on 127.0.0.1 driven by the test.

Each Connect shows up as a ``FakeStream`` whose incoming messages the test reads and whose
outgoing messages the test writes; writing ``None`` ends the stream (a dropped connection).
"""

import asyncio
import contextlib

import grpc
import grpc.aio
import pytest

from protos import agent_pb2, agent_pb2_grpc


class FakeStream:
    def __init__(self, peer_cn):
        self.peer_cn = peer_cn
        self.received: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self.outgoing: asyncio.Queue[agent_pb2.ManagerMessage | None] = asyncio.Queue()
        self.heartbeats = 0

    def send(self, **body):
        self.outgoing.put_nowait(agent_pb2.ManagerMessage(**body))

    def drop(self):
        self.outgoing.put_nowait(None)

    async def next(self, timeout=5.0):
        """The next message other than a heartbeat."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.received.get()
                if not message.HasField("heartbeat"):
                    return message
                self.heartbeats += 1

    async def quiet(self, seconds):
        """Assert that nothing but heartbeats arrives for ``seconds``."""
        with contextlib.suppress(TimeoutError):
            message = await self.next(timeout=seconds)
            pytest.fail(f"unexpected message: {message}")


class FakeManager(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, refuse=False):
        self.streams: asyncio.Queue[FakeStream] = asyncio.Queue()
        self.refuse = refuse

    async def Connect(self, request_iterator, context):
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "host removed")
        cn = context.auth_context()["x509_common_name"][0].decode()
        stream = FakeStream(cn)
        self.streams.put_nowait(stream)
        reader = asyncio.create_task(self._read(request_iterator, stream))
        try:
            while (message := await stream.outgoing.get()) is not None:
                yield message
        finally:
            reader.cancel()

    @staticmethod
    async def _read(request_iterator, stream):
        async for message in request_iterator:
            stream.received.put_nowait(message)


async def start_manager(pki, manager):
    server = grpc.aio.server(options=[("grpc.http2.bdp_probe", 0)])
    agent_pb2_grpc.add_AgentServiceServicer_to_server(manager, server)
    credentials = grpc.ssl_server_credentials([pki.server], root_certificates=pki.ca.pem,
                                              require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"
