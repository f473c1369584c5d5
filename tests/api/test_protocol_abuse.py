"""A hostile or broken agent: garbage, truncated frames, huge results, unknown action ids.
Each is refused or ends only its own stream; the manager keeps serving everyone else."""

import asyncio
import json
import socket

import grpc
import pytest

from manager.db.hosts import Action
from protos import agent_pb2
from tests.protocol_peer import connected, register

CONNECT = "/shepherd.agent.v1.AgentService/Connect"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def onboard(m, admin, fqdn):
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    return run(register(m.registration_address, m.ca_pem(), token["secret"], fqdn))


async def still_serves(m, identity) -> None:
    """A well-behaved agent connects and runs an action."""
    async with connected(m.agent_address, identity):
        outcome = await m.on_loop(m.dispatcher.dispatch(identity.host_id, "agent.ping", {}, 10))
    assert outcome.ok


def test_garbage_messages_end_only_that_stream(admin, accounts_reset):
    m = accounts_reset
    bad, good = onboard(m, admin, "bad.example"), onboard(m, admin, "good.example")

    async def scenario():
        creds = grpc.ssl_channel_credentials(bad.ca_pem, bad.key_pem, bad.cert_pem)
        async with grpc.aio.secure_channel(m.agent_address, creds) as channel:
            call = channel.stream_stream(CONNECT)(iter([b"\xff\xfe\x00garbage-not-protobuf"]))
            with pytest.raises(grpc.aio.AioRpcError):
                async for _ in call:
                    pass
        await still_serves(m, good)

    run(scenario())
    assert admin.get("/healthz") == {"status": "ok"}


def test_truncated_frames_and_raw_bytes_are_dropped(admin, accounts_reset):
    m = accounts_reset
    good = onboard(m, admin, "good2.example")
    host, port = m.agent_address.rsplit(":", 1)
    for payload in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04", b"\x16\x03\x01\x02\x00garbage"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(payload)
            sock.settimeout(5)
            try:
                sock.recv(1024)
            except (TimeoutError, ConnectionError):
                pass
    run(still_serves(m, good))


def test_unknown_action_ids_are_acknowledged_and_dropped(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "unknown-ids.example")

    async def scenario():
        async with connected(m.agent_address, identity) as peer:
            peer.send(action_result=agent_pb2.ActionResult(action_id="no-such-action",
                                                           success=True, result_json="{}"))
            for _ in range(50):
                if any("no-such-action" in x.result_ack.action_ids for x in peer.received
                       if x.WhichOneof("body") == "result_ack"):
                    break
                await asyncio.sleep(0.1)
        return peer

    peer = run(scenario())
    acks = [list(x.result_ack.action_ids) for x in peer.received if x.WhichOneof("body") == "result_ack"]
    assert ["no-such-action"] in acks  # beside the acks of the host's set-up actions
    assert m.db(lambda: Action.select().where(Action.id == "no-such-action").exists()) is False


def test_huge_results_are_refused_not_stored(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "huge.example")
    big = json.dumps({"blob": "x" * (5 * 1024 * 1024)})  # over the 4 MiB result limit

    async def scenario():
        answer = lambda r: agent_pb2.ActionResult(action_id=r.action_id, success=True,
                                                  result_json=big)
        async with connected(m.agent_address, identity, answer):
            return await m.on_loop(m.dispatcher.dispatch(identity.host_id, "report.inventory",
                                                         {}, 15))

    outcome = run(scenario())
    assert not outcome.ok and "exceeds" in outcome.error and outcome.result is None
