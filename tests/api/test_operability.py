"""Audit log, metrics, request ids in logs, secrets kept out of logs, readiness."""

import asyncio
import json
import logging
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from api.client import Client, ShepherdError
from tests.conftest import ADMIN_PASSWORD
from tests.protocol_peer import connected, register


def audit(admin, **filters):
    return admin.get("/api/audit_log/", limit=0, order_by="id", **filters)["objects"]


NEW_USER = {"username": "dora", "password1": "dora-password-1", "password2": "dora-password-1"}


def test_a_change_is_audited_without_its_secrets(admin):
    created = admin.post("/api/user/", NEW_USER)
    rows = audit(admin, object_type="user")
    assert len(rows) == 1
    row = rows[0]
    assert (row["kind"], row["method"], row["status"], row["outcome"]) == ("request", "POST", 201, "ok")
    assert row["username"] == "admin" and row["credential"] == "token"
    assert row["object_id"] == str(created["id"]) and row["path"] == "/api/user/"
    assert row["address"] == "127.0.0.1" and row["request_id"]
    summary = json.loads(row["summary"])
    assert summary["username"] == "dora" and summary["password1"] == "********"
    assert "dora-password-1" not in json.dumps(rows)


def test_refused_writes_and_failed_logins_are_audited(admin, make_user, accounts_reset):
    reader = make_user("reader", "filesystem_users")
    with pytest.raises(ShepherdError):
        reader.post("/api/user/", NEW_USER)
    with pytest.raises(ShepherdError):
        Client(accounts_reset.url, verify=accounts_reset.ca_path).login("admin", "guess-guess")
    refused = audit(admin, object_type="user", outcome="refused")
    assert [(r["username"], r["status"]) for r in refused] == [("reader", 403)]
    logins = audit(admin, kind="login")
    failed = [r for r in logins if r["outcome"] == "refused"]
    assert [(r["username"], r["status"], r["path"]) for r in failed] == [("admin", 400, "/auth/token")]
    assert "guess-guess" not in json.dumps(logins)
    assert any(r["outcome"] == "ok" and r["object_type"] == "token" for r in logins)


def test_audit_log_is_for_superusers_and_filters(admin, make_user):
    reader = make_user("reader2", "filesystem_users")
    with pytest.raises(ShepherdError) as err:
        reader.get("/api/audit_log/")
    assert err.value.status == 403
    admin.post("/api/user/", NEW_USER)
    assert audit(admin, user="admin", object_type="user")
    assert audit(admin, user="nobody") == []
    first = audit(admin)[0]
    assert audit(admin, at__gte=first["at"])
    with pytest.raises(ShepherdError) as err:
        admin.get("/api/audit_log/", summary__contains="x")
    assert err.value.status == 400


def test_actions_are_audited_with_their_outcome(admin, accounts_reset):
    m = accounts_reset
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})

    async def scenario():
        identity = await register(m.registration_address, m.ca_pem(), token["secret"], "aud.example")
        async with connected(m.agent_address, identity):
            outcome = await m.on_loop(m.dispatcher.dispatch(identity.host_id, "agent.ping",
                                                            {"a": 1}, 10, caused_by="admin"))
        return identity, outcome

    identity, outcome = asyncio.run(scenario())
    rows = [r for r in audit(admin, kind="action") if r["action_id"] == outcome.action_id]
    assert [(r["object_type"], r["object_id"], r["action_id"], r["outcome"], r["username"])
            for r in rows] == [("host", str(identity.host_id), outcome.action_id, "succeeded", "admin")]
    assert json.loads(rows[0]["summary"]) == {"action": "agent.ping", "args": {"a": 1}}


def scrape(manager, token):
    r = requests.get(manager.url + "/metrics", headers={"Authorization": f"Bearer {token}"},
                     verify=manager.ca_path, timeout=10)
    assert r.status_code == 200
    return {s.name + json.dumps(s.labels, sort_keys=True): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def test_metrics_parse_and_move(admin, accounts_reset):
    before = scrape(accounts_reset, admin.token)
    for _ in range(3):
        admin.get("/api/user/")
    after = scrape(accounts_reset, admin.token)
    key = 'shepherd_http_requests_total{"family": "iml", "method": "GET", "route": "/api/user/", "status": "200"}'
    assert after[key] - before.get(key, 0) == 3
    assert any(k.startswith("shepherd_http_request_duration_seconds_bucket") for k in after)
    assert any(k.startswith("shepherd_db_call_duration_seconds_count") for k in after)
    assert "shepherd_grpc_streams{}" in after
    assert not any("127.0.0.1" in k or "/api/user/1" in k for k in after)


def test_engine_steps_are_counted(admin, accounts_reset):
    from tests.api.test_registration import onboard, set_up
    before = scrape(accounts_reset, admin.token)
    key = "shepherd_engine_step_duration_seconds_count{}"
    set_up(accounts_reset, admin, onboard(accounts_reset, admin, "metered.example"), "working")
    after = scrape(accounts_reset, admin.token)
    # two jobs, each advanced twice: start its action step, then record it and run the rest
    assert after[key] - before.get(key, 0) >= 4
    assert "shepherd_jobs_running{}" in after


def test_metrics_need_credentials(accounts_reset):
    r = requests.get(accounts_reset.url + "/metrics", verify=accounts_reset.ca_path, timeout=10)
    assert r.status_code == 401


def test_log_lines_carry_the_request_id(admin, accounts_reset, caplog):
    caplog.set_level(logging.INFO)
    requests.get(accounts_reset.url + "/api/user/", verify=accounts_reset.ca_path, timeout=10,
                 headers={"Authorization": f"Bearer {admin.token}", "X-Request-Id": "trace-me-42"})
    deadline = time.monotonic() + 5  # the access line is written just after the response
    while time.monotonic() < deadline:
        lines = [r for r in caplog.records if getattr(r, "request_id", "") == "trace-me-42"]
        if lines:
            break
        time.sleep(0.05)
    assert lines, "no log line carried the request id"


def test_secrets_never_reach_the_logs(admin, accounts_reset, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = ["dora-password-1", ADMIN_PASSWORD]
    admin.post("/api/user/", NEW_USER)
    secrets.append(Client(accounts_reset.url, verify=accounts_reset.ca_path).login(
        "dora", "dora-password-1")["access_token"])
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    secrets.append(token["secret"])
    admin.post("/api/test_host/", {"address": "203.0.113.1:1", "root_pw": "ssh-secret-99"})
    secrets.append("ssh-secret-99")
    text = "\n".join(logging.Formatter("%(message)s %(request_id)s").format(r)
                     if hasattr(r, "request_id") else r.getMessage() for r in caplog.records)
    assert text, "nothing was logged"
    leaked = [s for s in secrets if s in text]
    assert leaked == []


def test_ready_and_healthy(anon):
    assert anon.get("/healthz") == {"status": "ok"}
    doc = anon.get("/readyz")
    assert doc["status"] == "ready"
    assert {c["name"] for c in doc["checks"]} == {"database", "migrations", "agent_server"}
