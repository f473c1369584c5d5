"""The gRPC AgentService: Register (a token buys a certificate) and Connect (the stream).

The client certificate is the agent's identity on Connect: its serial must belong to a live
host. Everything the stream says is about that host only; a result for another host's
action is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import grpc
from cryptography import x509
from google.protobuf import json_format

from manager.agents.presence import Presence
from manager.agents.sessions import AgentSession, SessionRegistry
from manager.db.executor import DatabaseExecutor, DatabaseUnavailable
from manager.domain import host_lifecycle, hosts
from manager.domain.errors import Conflict, PermissionDenied, ValidationError
from manager.engine.dispatch import Dispatcher, IncomingResult
from manager.pki import CertificateAuthority
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger("shepherd.agents")
PROTOCOL_VERSION = 1
HELLO_TIMEOUT = 30.0


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, db: DatabaseExecutor, ca: CertificateAuthority, dispatcher: Dispatcher,
                 registry: SessionRegistry, presence: Presence, heartbeat_interval: int,
                 max_handshakes: int = 64, on_registered: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.ca = ca
        self.dispatcher = dispatcher
        self.registry = registry
        self.presence = presence
        self.heartbeat_interval = heartbeat_interval
        self.on_registered = on_registered  # the host's set-up command was stored: run it
        # admission control: a reconnect storm of 10,000 agents must not starve the loop
        self._handshakes = asyncio.Semaphore(max_handshakes)

    async def Register(self, request: agent_pb2.RegisterRequest,
                       context: grpc.aio.ServicerContext) -> agent_pb2.RegisterResponse:
        inventory = json_format.MessageToDict(request.inventory, preserving_proto_field_name=True)
        reg = hosts.Registration(
            secret=request.token, csr_pem=request.csr_pem, fqdn=request.fqdn,
            nodename=request.nodename or request.fqdn.split(".")[0], roles=tuple(request.roles),
            version=request.version, address=request.address or _peer_address(context),
            inventory=inventory)
        try:
            host, command_id = await self.db.run(host_lifecycle.register, reg, self.ca.sign_agent_csr)
        except hosts.RegistrationRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.message)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        except Conflict as exc:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, exc.message)
        except DatabaseUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable, retry later")
        self.on_registered()
        log.info("registered host %s (id %d, profile %s); set-up is command %d", host.fqdn,
                 host.id, host.server_profile.name, command_id)
        return agent_pb2.RegisterResponse(host_id=host.id, certificate_pem=host.certificate_pem,
                                          ca_pem=self.ca.ca_pem)

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext):
        session, running = await self._open(request_iterator, context)
        yield agent_pb2.ManagerMessage(welcome=agent_pb2.Welcome(
            host_id=session.host_id, protocol_version=PROTOCOL_VERSION,
            heartbeat_interval_s=self.heartbeat_interval))
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            await self._reconcile(session, running)
            while True:
                message = await session.queue.get()
                if message is None:
                    break
                yield message
        finally:
            reader.cancel()
            if self.registry.detach(session):
                self.presence.disconnected(session.host_id)
                log.info("host %s disconnected", session.fqdn)

    async def _open(self, request_iterator, context: grpc.aio.ServicerContext
                    ) -> tuple[AgentSession, set[str]]:
        """Read the Hello, identify the peer by its certificate, register the session;
        the session and the ids of the actions the agent says it is still running.

        The Hello is read before any refusal so the agent's first write has landed: a
        refusal racing that write reaches the agent as INTERNAL instead of its real status.
        """
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT)
        except (StopAsyncIteration, TimeoutError):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected Hello first")
        if first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected Hello first")
        serial = _peer_serial(context)
        if serial is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        async with self._handshakes:
            try:
                host = await self.db.run(hosts.identify, serial)
            except PermissionDenied:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                    "certificate refused: unknown, revoked or its host was removed")
            except DatabaseUnavailable:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable, retry later")
            hello = first.hello
            inventory = json_format.MessageToDict(hello.inventory, preserving_proto_field_name=True)
            await self.db.run(hosts.record_hello, host.id, hello.version, inventory)
        session = AgentSession(host.id, host.fqdn, tuple(hosts.host_roles(host)))
        self.registry.attach(session)
        self.presence.connected(host.id)
        log.info("host %s connected (agent %s)", host.fqdn, hello.version or "?")
        return session, set(hello.running_action_ids)

    async def _reconcile(self, session: AgentSession, running: set[str]) -> None:
        """Send the host's unfinished actions, except those its agent is already running,
        and cancel what it runs that finished here while it was away (cancelled, or past
        its deadline): a Cancel sent to a dropped stream is lost, and without this the
        action would run on, perhaps for hours, against the manager's record."""
        pending = await self.dispatcher.pending_for(session.host_id)
        self.registry.deliver(session.host_id, [s for s in pending if s.id not in running])
        for action_id in sorted(running - {s.id for s in pending}):
            log.info("host %s still runs action %s, which finished here: cancelling it",
                     session.fqdn, action_id, extra={"action_id": action_id,
                                                     "host": session.host_id})
            self.registry.cancel(session.host_id, action_id)

    async def _read(self, request_iterator, session: AgentSession) -> None:
        try:
            async for message in request_iterator:
                self.presence.seen(session.host_id)
                kind = message.WhichOneof("body")
                if kind == "action_result":
                    asyncio.create_task(self._store(session, message.action_result))
                elif kind == "action_progress":
                    log.debug("action %s on %s: %s", message.action_progress.action_id,
                              session.fqdn, message.action_progress.line[:500])
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception:
            log.warning("stream of host %s failed", session.fqdn, exc_info=True)
        finally:
            session.close()

    async def _store(self, session: AgentSession, result: agent_pb2.ActionResult) -> None:
        incoming = IncomingResult(
            result.action_id, result.success, result.result_json, result.error,
            [json_format.MessageToDict(c, preserving_proto_field_name=True) for c in result.console])
        try:
            verdict = await self.dispatcher.store_result(session.host_id, incoming)
        except DatabaseUnavailable:
            return  # not acknowledged: the agent sends it again after reconnecting
        if verdict == "foreign":
            log.warning("host %s sent a result for action %s of another host: refused",
                        session.fqdn, result.action_id)
            return
        if verdict == "unknown":
            log.warning("host %s sent a result for unknown action %s: dropped", session.fqdn,
                        result.action_id)
        session.send(agent_pb2.ManagerMessage(result_ack=agent_pb2.ResultAck(
            action_ids=[result.action_id])))


def _peer_serial(context: grpc.aio.ServicerContext) -> str | None:
    pem = context.auth_context().get("x509_pem_cert")
    if not pem:
        return None
    return str(x509.load_pem_x509_certificate(pem[0]).serial_number)


def _peer_address(context: grpc.aio.ServicerContext) -> str:
    """``ipv4:10.0.0.5:51234`` → ``10.0.0.5``."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]").replace("%5B", "").replace("%5D", "")
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else ""

