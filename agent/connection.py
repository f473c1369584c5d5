"""One agent's long-lived mTLS stream to the manager, re-established whenever it drops.

A session: Hello (roles, version, inventory, actions still running) → Welcome → heartbeats
every Welcome.heartbeat_interval_s (jittered), ActionRequest/Cancel/ResultAck handed to the
``ActionRunner``, and every unacknowledged result re-sent. When the stream ends for any
reason the agent marks itself disconnected, logs one line and reconnects after a jittered
exponential backoff.

Built so the simulator can hold thousands in one event loop: identity, machine, runner and
status sink are passed in; there is no module-level state, no signal handling and no exit.
Channel settings follow reference/grpc-scale.md: no BDP probing, no client keepalive (the
application heartbeat and the server's keepalive find dead peers), no transparent retries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence

import grpc
import grpc.aio

from agent import __version__, inventory
from agent.actions import Machine
from agent.backoff import Backoff
from agent.config import AgentConfig
from agent.protocol import agent_message
from agent.runner import ActionRunner
from agent.state import Identity, StateError
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = (
    ("grpc.http2.bdp_probe", 0),
    ("grpc.enable_retries", 0),
    # One subchannel per agent even when the simulator opens thousands to one target.
    ("grpc.use_local_subchannel_pool", 1),
)
REFUSED = "certificate refused: host removed or revoked?"


class ProtocolError(Exception):
    """The manager answered something the protocol does not allow here."""


@dataclasses.dataclass(frozen=True)
class Status:
    """What ``run`` reports about its stream (written to status.json by the CLI)."""

    connected: bool
    since: float                 # epoch seconds when ``connected`` last changed (0 = never)
    last_error: str | None = None


# Called in a worker thread on every change; may raise StateError (logged, then ignored).
StatusSink = Callable[[Status], None]


class AgentConnection:
    """Keeps one agent connected to ``target`` ("host:port") until ``run``'s stop is set."""

    def __init__(self, target: str, identity: Identity, machine: Machine,
                 roles: Sequence[str], runner: ActionRunner, config: AgentConfig,
                 on_status: StatusSink | None = None, rng: random.Random | None = None) -> None:
        self._target = target
        self._credentials = grpc.ssl_channel_credentials(
            identity.ca_pem, identity.key_pem, identity.cert_pem)
        self._machine = machine
        self._roles = list(roles)
        self._runner = runner
        self._config = config
        self._on_status = on_status
        self._rng = rng or random.Random()  # jitter, not cryptography
        self._backoff = Backoff(config.backoff_min_s, config.backoff_max_s, self._rng)
        self._label = machine.fqdn
        self._welcomed_at: float | None = None
        self.status = Status(connected=False, since=0)

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, reconnect, until ``stop`` is set; never raises for stream errors.

        Setting ``stop`` ends the current attempt at once (even mid-handshake) and closes
        the channel; running actions are the caller's to stop (``ActionRunner.close``).
        """
        stopping = asyncio.create_task(stop.wait())
        try:
            while (ended := await self._attempt(stopping)) is not None:
                error, refused = ended
                delay = self._delay_after(refused)
                log.warning("%s: %s %s: %s; retrying in %.1f s", self._label,
                            "lost" if self._welcomed_at else "cannot connect to",
                            self._target, error, delay)
                await self._report(connected=False, error=error)
                await asyncio.wait([stopping], timeout=delay)
                if stop.is_set():
                    break
        finally:
            stopping.cancel()
        await self._report(connected=False, error="stopped")

    async def _attempt(self, stopping: asyncio.Task[bool]) -> tuple[str, bool] | None:
        """One session raced against ``stopping``; None once stopping has won."""
        self._welcomed_at = None
        session = asyncio.create_task(self._session())
        await asyncio.wait([session, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            return None
        return session.result()

    def _delay_after(self, refused: bool) -> float:
        if refused:
            return self._backoff.maximum
        up = self._welcomed_at is not None and \
            time.monotonic() - self._welcomed_at >= self._config.backoff_reset_s
        if up:
            self._backoff.reset()
        return self._backoff.next_delay()

    async def _session(self) -> tuple[str, bool]:
        """One connection attempt and its stream; returns (why it ended, certificate refused)."""
        channel = grpc.aio.secure_channel(self._target, self._credentials,
                                          options=CHANNEL_OPTIONS)
        try:
            await self._converse(channel)
        except grpc.aio.AioRpcError as exc:
            return _describe(exc), exc.code() == grpc.StatusCode.UNAUTHENTICATED
        except (TimeoutError, ProtocolError) as exc:
            return str(exc) or "timed out waiting for Welcome", False
        except Exception as exc:  # the agent must outlive any stream failure
            log.exception("%s: unexpected stream failure", self._label)
            return f"{type(exc).__name__}: {exc}", False
        finally:
            self._runner.detach()
            await channel.close(grace=None)
        return "stream closed by the manager", False

    async def _converse(self, channel: grpc.aio.Channel) -> None:
        """Hello/Welcome, then serve until the stream ends."""
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        async with asyncio.timeout(self._config.connect_timeout_s):
            await _send(call, await self._hello())
            welcome = await self._welcome(call)
        outbound: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
        self._runner.attach(outbound.put_nowait)
        self._welcomed_at = time.monotonic()
        log.info("%s: connected to %s as host %d", self._label, self._target, welcome.host_id)
        await self._report(connected=True)
        for result in await self._runner.unacknowledged():
            outbound.put_nowait(agent_message(action_result=result))
        await self._serve(call, outbound, welcome)

    async def _hello(self) -> agent_pb2.AgentMessage:
        facts = await asyncio.to_thread(self._machine.inventory)
        hello = agent_pb2.Hello(roles=self._roles, version=__version__,
                                inventory=inventory.to_message(facts),
                                running_action_ids=self._runner.running_ids())
        return agent_message(hello=hello)

    @staticmethod
    async def _welcome(call: grpc.aio.StreamStreamCall) -> agent_pb2.Welcome:
        message = await call.read()
        if message is grpc.aio.EOF:
            raise ProtocolError("the manager closed the stream before Welcome")
        if not message.HasField("welcome"):
            raise ProtocolError(f"expected Welcome, got {message.WhichOneof('body')}")
        return message.welcome

    async def _serve(self, call: grpc.aio.StreamStreamCall,
                     outbound: asyncio.Queue[agent_pb2.AgentMessage],
                     welcome: agent_pb2.Welcome) -> None:
        """Run writer, heartbeat and reader until one ends; re-raise what ended it."""
        interval = welcome.heartbeat_interval_s or self._config.default_heartbeat_s
        tasks = [asyncio.create_task(self._write(call, outbound)),
                 asyncio.create_task(self._heartbeat(outbound, interval)),
                 asyncio.create_task(self._receive(call))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            call.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()

    @staticmethod
    async def _write(call: grpc.aio.StreamStreamCall,
                     outbound: asyncio.Queue[agent_pb2.AgentMessage]) -> None:
        while True:
            await _send(call, await outbound.get())

    async def _heartbeat(self, outbound: asyncio.Queue[agent_pb2.AgentMessage],
                         interval: float) -> None:
        jitter = self._config.heartbeat_jitter
        while True:
            await asyncio.sleep(interval * self._rng.uniform(1 - jitter, 1 + jitter))
            beat = agent_pb2.Heartbeat(sent_at_ms=int(time.time() * 1000))
            outbound.put_nowait(agent_message(heartbeat=beat))

    async def _receive(self, call: grpc.aio.StreamStreamCall) -> None:
        while (message := await call.read()) is not grpc.aio.EOF:
            await self._handle(message)

    async def _handle(self, message: agent_pb2.ManagerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "action_request":
            self._runner.submit(message.action_request)
        elif kind == "cancel":
            self._runner.cancel(message.cancel.action_id)
        elif kind == "result_ack":
            await self._runner.acknowledge(message.result_ack.action_ids)
        else:
            log.info("%s: ignoring unexpected %s from the manager", self._label, kind)

    async def _report(self, connected: bool, error: str | None = None) -> None:
        """Record the stream's state; ``since`` moves only when ``connected`` changes."""
        if self.status.connected != connected or self.status.since == 0:
            self.status = Status(connected, time.time(), error)
        else:
            self.status = dataclasses.replace(self.status, last_error=error)
        if self._on_status is None:
            return
        try:
            await asyncio.to_thread(self._on_status, self.status)
        except StateError as exc:  # a status file problem must not stop the agent
            log.error("%s: cannot record status: %s", self._label, exc)


async def _send(call: grpc.aio.StreamStreamCall, message: agent_pb2.AgentMessage) -> None:
    """Write ``message``; a call that already failed raises its own status, not a bare
    InvalidStateError (grpc.aio's answer to a write after e.g. "connection refused")."""
    try:
        await call.write(message)
    except asyncio.InvalidStateError:
        raise grpc.aio.AioRpcError(await call.code(), details=await call.details()) from None


def _describe(exc: grpc.aio.AioRpcError) -> str:
    """One line for a failed RPC; a refused certificate is named as such."""
    details = (exc.details() or "").splitlines()[0:1]
    detail = details[0] if details else ""
    if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
        return f"{REFUSED} ({detail})"
    return f"{exc.code().name}: {detail}"
