"""/api/registration_token/ and onboarding over the agent protocol (Register, Connect)."""

import asyncio
import datetime
import json
import re
import time

import grpc
import pytest

from api.client import ShepherdError
from manager.db.hosts import Action, RegistrationToken
from protos import agent_pb2
from tests.protocol_peer import Peer, connected, register


def error(call, *args, **kwargs):
    with pytest.raises(ShepherdError) as err:
        call(*args, **kwargs)
    return err.value


def test_token_defaults_and_register_command(admin, accounts_reset):
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    assert re.fullmatch(r"[A-Za-z0-9]{16}", token["secret"])
    assert token["credits"] == 1 and token["cancelled"] is False
    assert token["profile"] == "/api/server_profile/compute_node/"
    expiry = datetime.datetime.fromisoformat(token["expiry"])
    assert 50 < (expiry - datetime.datetime.now(datetime.UTC)).total_seconds() <= 60
    fingerprint = accounts_reset.manager.ctx.ca.fingerprint
    install, register_step, start = token["register_command"].split(" && ")
    assert install == "dnf -y install shepherd-agent"
    assert register_step.startswith("shepherd-agent register --manager https://")
    assert register_step.endswith(f"--token {token['secret']} --ca-sha256 {fingerprint}")
    assert start == "systemctl enable --now shepherd-agent"
    assert admin.get(token["resource_uri"]) == token


@pytest.mark.parametrize("body,field", [
    ({}, "profile"),
    ({"profile": "no_such_profile"}, "profile"),
    ({"profile": "compute_node", "credits": 0}, "credits"),
    ({"profile": "compute_node", "credits": "many"}, "credits"),
    ({"profile": "compute_node", "expiry": "2001-01-01T00:00:00+00:00"}, "expiry"),
    ({"profile": "compute_node", "expiry": "tomorrow"}, "expiry"),
    ({"profile": "compute_node", "colour": "red"}, "colour"),
])
def test_token_refusals(admin, body, field):
    err = error(admin.post, "/api/registration_token/", body)
    assert err.status == 400 and field in err.body


def test_tokens_are_for_administrators(make_user):
    user = make_user("reader", "filesystem_users")
    assert error(user.post, "/api/registration_token/", {"profile": "compute_node"}).status == 403
    assert error(user.get, "/api/registration_token/").status == 403
    fs_admin = make_user("fsadmin", "filesystem_administrators")
    fs_admin.post("/api/registration_token/", {"profile": "compute_node", "credits": 3})


def test_patch_only_cancels_and_cancelled_tokens_vanish(admin):
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    err = error(admin.request, "PATCH", token["resource_uri"], json_body={"credits": 5})
    assert err.status == 400 and "credits" in err.body
    admin.request("PATCH", token["resource_uri"], json_body={"cancelled": True})
    assert error(admin.get, token["resource_uri"]).status == 404
    assert admin.get("/api/registration_token/")["objects"] == []


def test_list_hides_expired_and_spent_tokens(admin, accounts_reset):
    live = admin.post("/api/registration_token/", {"profile": "compute_node"})
    expired = admin.post("/api/registration_token/", {"profile": "compute_node"})
    spent = admin.post("/api/registration_token/", {"profile": "compute_node"})
    past = datetime.datetime(2000, 1, 1)
    accounts_reset.db(lambda: RegistrationToken.update(expiry=past)
                      .where(RegistrationToken.id == expired["id"]).execute())
    accounts_reset.db(lambda: RegistrationToken.update(credits=0)
                      .where(RegistrationToken.id == spent["id"]).execute())
    assert [t["id"] for t in admin.get("/api/registration_token/")["objects"]] == [live["id"]]


# --- the protocol ---------------------------------------------------------------------------

def wait_for_command(client, uri, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        command = client.get(uri)
        if command["complete"]:
            return command
        time.sleep(0.1)
    raise AssertionError(f"{uri} did not complete")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def onboard(manager, admin, fqdn, profile="compute_node", credits=1):
    token = admin.post("/api/registration_token/", {"profile": profile, "credits": credits})
    return run(register(manager.registration_address, manager.ca_pem(), token["secret"], fqdn))


def set_up(manager, admin, identity, state):
    """Connect as a healthy agent until the host's set-up command took it to ``state``."""
    async def scenario():
        async with connected(manager.agent_address, identity):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                host = await asyncio.to_thread(admin.get, f"/api/host/{identity.host_id}/")
                if host["state"] == state and host["available_transitions"]:
                    return host
                await asyncio.sleep(0.1)
        raise AssertionError(f"host {identity.host_id} was not set up to {state}")
    return run(scenario())


def test_registration_creates_the_host_and_its_set_up_command(admin, accounts_reset):
    identity = onboard(accounts_reset, admin, "stor1.example", "managed_storage_server")
    host = admin.get(f"/api/host/{identity.host_id}/")
    assert host["fqdn"] == "stor1.example" and host["nodename"] == "stor1"
    assert host["state"] == "unconfigured" and host["roles"] == ["storage"]
    assert host["server_profile"]["name"] == "managed_storage_server"
    assert host["connected"] is False and host["resource_uri"] == f"/api/host/{identity.host_id}/"
    assert b"BEGIN CERTIFICATE" in identity.cert_pem
    command, = admin.get("/api/command/")["objects"]
    assert command["message"] == "Set up host stor1.example" and not command["complete"]
    jobs = [admin.get(uri) for uri in command["jobs"]]
    assert [j["class_name"] for j in jobs] == ["InstallHostPackagesJob", "SetupHostJob"]
    assert jobs[1]["wait_for"] == [jobs[0]["resource_uri"]]
    # the set-up job holds the host: it offers no transition, only Force Remove
    assert host["available_transitions"] == []
    assert [j["class_name"] for j in host["available_jobs"]] == ["ForceRemoveHostJob"]
    assert host["locks"]["write"] == [j["id"] for j in jobs]
    host = set_up(accounts_reset, admin, identity, "managed")
    assert json.loads(host["properties"])["cpu_count"] == 2  # from the reported inventory
    assert admin.get(command["resource_uri"])["complete"] is True


@pytest.mark.parametrize("spoil,message", [
    (None, "no credits left"),
    ("expire", "expired"),
    ("cancel", "cancelled"),
    ("forge", "unknown"),
])
def test_refused_registrations_say_why(admin, accounts_reset, spoil, message):
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    m = accounts_reset
    run(register(m.registration_address, m.ca_pem(), token["secret"], "first.example"))
    if spoil == "expire":
        m.db(lambda: RegistrationToken.update(credits=5, expiry=datetime.datetime(2000, 1, 1)).execute())
    elif spoil == "cancel":
        m.db(lambda: RegistrationToken.update(credits=5, cancelled=True).execute())
    secret = "A" * 16 if spoil == "forge" else token["secret"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run(register(m.registration_address, m.ca_pem(), secret, "second.example"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert message in err.value.details()


def test_fqdn_in_use_and_bad_csr(admin, accounts_reset):
    m = accounts_reset
    token = admin.post("/api/registration_token/", {"profile": "compute_node", "credits": 5})
    run(register(m.registration_address, m.ca_pem(), token["secret"], "dup.example"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run(register(m.registration_address, m.ca_pem(), token["secret"], "dup.example"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run(register(m.registration_address, m.ca_pem(), token["secret"], "x.example",
                     csr_pem=b"not a csr"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert admin.get(token["resource_uri"])["credits"] == 4  # refusals spend nothing


def test_racing_for_the_last_credit_exactly_one_wins(admin, accounts_reset):
    m = accounts_reset
    token = admin.post("/api/registration_token/", {"profile": "compute_node", "credits": 1})

    async def race():
        attempts = [register(m.registration_address, m.ca_pem(), token["secret"], f"racer{i}.example")
                    for i in range(8)]
        return await asyncio.gather(*attempts, return_exceptions=True)

    outcomes = run(race())
    winners = [o for o in outcomes if not isinstance(o, Exception)]
    losers = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(winners) == 1 and len(losers) == 7
    assert {(o.code(), o.details()) for o in losers} == {
        (grpc.StatusCode.PERMISSION_DENIED, "registration token has no credits left")}
    assert admin.get("/api/host/")["meta"]["total_count"] == 1


def test_connect_and_run_an_action(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "node1.example")

    async def scenario():
        async with connected(m.agent_address, identity) as peer:
            outcome = await m.on_loop(m.dispatcher.dispatch(identity.host_id, "agent.ping",
                                                            {"x": 1}, timeout=10))
        return outcome, peer

    outcome, peer = run(scenario())
    assert outcome.ok and outcome.result == {"echo": {"x": 1}}
    acks = [m.result_ack for m in peer.received if m.WhichOneof("body") == "result_ack"]
    # acknowledged once (beside the acks of the host's set-up actions)
    assert sum(list(a.action_ids).count(outcome.action_id) for a in acks) == 1


def test_action_queued_while_offline_is_delivered_on_connect(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "late.example")

    async def scenario():
        action_id = await m.on_loop(m.dispatcher.submit(identity.host_id, "agent.ping", {}, 30))
        async with connected(m.agent_address, identity):
            return await m.on_loop(m.dispatcher.wait(action_id, 20))

    assert run(scenario()).ok


def test_a_reconnecting_agent_is_told_to_stop_what_finished_while_it_was_away(
        admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "away.example")

    async def scenario():
        gone = await m.on_loop(m.dispatcher.submit(identity.host_id, "agent.sleep", {}, 300))
        kept = await m.on_loop(m.dispatcher.submit(identity.host_id, "agent.sleep", {}, 300))
        assert await m.on_loop(m.dispatcher.cancel(gone))  # no stream: the Cancel went nowhere
        silent = lambda request: None  # a busy agent: it answers nothing yet
        async with connected(m.agent_address, identity, silent, running=(gone, kept)) as peer:
            for _ in range(50):
                if any(x.WhichOneof("body") == "cancel" for x in peer.received):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # room for anything wrongly sent after the Cancel
        return gone, kept, peer.received

    gone, kept, received = run(scenario())
    cancels = [x.cancel.action_id for x in received if x.WhichOneof("body") == "cancel"]
    requests = [x.action_request.action_id for x in received
                if x.WhichOneof("body") == "action_request"]
    assert cancels == [gone]
    assert gone not in requests and kept not in requests  # the agent already runs ``kept``
    assert requests  # the host's set-up actions, which it does not run, are still sent


def test_no_client_certificate_is_refused(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "nocert.example")
    identity.key_pem = identity.cert_pem = None
    peer = Peer(m.registration_address, identity)  # the server-TLS port cannot identify anyone
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run(peer.run())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_removed_hosts_certificate_is_refused(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "gone.example")
    # its set-up waits for an agent that never connects: Force Remove takes over
    command = admin.post("/api/command/", {"message": "Force remove gone", "jobs": [
        {"class_name": "ForceRemoveHostJob", "args": {"host_id": identity.host_id}}]})
    wait_for_command(admin, command["resource_uri"])
    assert error(admin.get, f"/api/host/{identity.host_id}/").status == 404
    setup, force = admin.get("/api/command/", order_by="created_at")["objects"]
    assert setup["message"] == "Set up host gone.example" and setup["cancelled"] is True
    assert "Force Remove" not in setup["logs"] and "took over" in setup["logs"]
    assert force["cancelled"] is False and force["errored"] is False
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run(Peer(m.agent_address, identity).run())
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in err.value.details()


def test_a_host_cannot_answer_for_another(admin, accounts_reset):
    m = accounts_reset
    a = onboard(m, admin, "a.example")
    b = onboard(m, admin, "b.example")

    async def scenario():
        b_action = await m.on_loop(m.dispatcher.submit(b.host_id, "agent.ping", {}, 30))
        async with connected(m.agent_address, a) as peer:
            peer.send(action_result=agent_pb2.ActionResult(action_id=b_action, success=True,
                                                           result_json='{"forged": true}'))
            await asyncio.sleep(1.0)
        return b_action, peer

    b_action, peer = run(scenario())
    assert m.db(lambda: Action.get_by_id(b_action).state) == "queued"
    assert not [x for x in peer.received
                if x.WhichOneof("body") == "result_ack" and b_action in x.result_ack.action_ids]


def test_deadline_passes_with_a_clear_error(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "slow.example")

    async def scenario():
        async with connected(m.agent_address, identity, handler=lambda request: None) as peer:
            outcome = await m.on_loop(m.dispatcher.dispatch(identity.host_id, "agent.sleep", {}, 1.5))
            await asyncio.sleep(0.5)
        return outcome, peer

    outcome, peer = run(scenario())
    assert not outcome.ok and "deadline passed" in outcome.error
    assert any(x.WhichOneof("body") == "cancel" for x in peer.received)


def test_contact_loss_raises_and_reconnect_clears_an_alert(admin, accounts_reset):
    m = accounts_reset
    identity = onboard(m, admin, "flaky.example")

    async def connect_briefly():
        async with connected(m.agent_address, identity):
            pass

    run(connect_briefly())
    deadline = time.monotonic() + 15
    alerts = []
    while time.monotonic() < deadline and not alerts:
        alerts = admin.get("/api/alert/", alert_type="HostContactAlert", active="true")["objects"]
        time.sleep(0.5)
    assert alerts and alerts[0]["alert_item"] == f"/api/host/{identity.host_id}/"
    assert alerts[0]["severity"] == "WARNING"
    run(connect_briefly())
    assert admin.get("/api/alert/", alert_type="HostContactAlert", active="true")["objects"] == []
    ended = admin.get("/api/alert/", alert_type="HostContactAlert")["objects"]
    assert ended[0]["active"] is None and ended[0]["end"] is not None


def test_host_transitions_come_from_the_state_machine(admin, accounts_reset):
    identity = onboard(accounts_reset, admin, "sm.example", "managed_storage_server")
    uri = f"/api/host/{identity.host_id}/"
    host = set_up(accounts_reset, admin, identity, "managed")
    assert [(t["state"], t["verb"]) for t in host["available_transitions"]] == [("removed", "Remove")]
    assert host["immutable_state"] is False
    err = error(admin.put, uri, {"state": "monitored"})
    assert err.status == 400 and "available: removed" in err.body["state"]
    assert admin.put(uri, {"state": "managed"}) is None  # already there: 204
    preview = admin.put(uri, {"state": "removed", "dry_run": True})
    assert [j["class_name"] for j in preview["jobs"]] == ["RemoveManagedHostJob"]
    assert preview["hosts"] == [] and preview["waits_behind"] == []
    assert admin.get(uri)["state"] == "managed"  # a preview changes nothing
    command = admin.put(uri, {"state": "removed"})["command"]
    assert command["message"] == "Remove sm.example"
    assert command["resource_uri"] == f"/api/command/{command['id']}/"
    assert wait_for_command(admin, command["resource_uri"])["errored"] is False
    assert error(admin.get, uri).status == 404
