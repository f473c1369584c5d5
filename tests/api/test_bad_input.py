"""Hostile and broken input to the IML family, on SQLite and on PostgreSQL (issue 14).

Each class of bad input is answered in the family's error shape (a JSON object: ``{field:
message}`` for a 400, ``{"__all__": message}`` otherwise), never a 500 or a hang, and the
manager serves an ordinary request right after. Concurrent writes to one object end as one
of the writes, whole.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from manager.db.accounts import User
from manager.db.hosts import Alert
from manager.domain import alerts
from manager.http.iml import query as q
from manager.pki import CertificateAuthority
from tests.api.test_errors import session as raw
from tests.protocol_peer import Peer, register

TIMEOUT = 30  # a hang shows as a timeout, not a stuck test run



def send(session: requests.Session, manager, method: str, path: str, **kw) -> requests.Response:
    return session.request(method, manager.url + path, timeout=TIMEOUT, **kw)


def raw_request(manager, request: str) -> tuple[bytes, bytes]:
    """Send ``request`` as written over TLS; the status line and headers, and the body."""
    host, port = manager.url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=manager.ca_path)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1).encode())
        answer = b""
        try:
            while chunk := tls.recv(65536):
                answer += chunk
        except ConnectionError:  # closed after answering, with the request still unread
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def assert_refused(response: requests.Response, status: int, field: str | None = None) -> dict:
    """The IML error shape: the status, a JSON object of messages naming ``field``."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert isinstance(body, dict) and body, body
    assert all(isinstance(v, str) for v in body.values()), body
    if field is not None:
        assert field in body, body
    return body


def assert_still_serves(admin) -> None:
    assert admin.get("/api/user/")["meta"]["total_count"] >= 1
    assert admin.get("/healthz") == {"status": "ok"}


# --- bodies: huge, deep, wrong types, unknown fields ------------------------------------

NEW_USER = {"username": "mallory", "password1": "mallory-pass-1",
            "password2": "mallory-pass-1"}


def test_huge_json_just_under_the_limit_is_refused_by_field(admin, accounts_reset):
    m = accounts_reset
    filler = "x" * (m.config.max_body_bytes - 200)
    body = json.dumps({**NEW_USER, "username": filler}).encode()
    assert len(body) <= m.config.max_body_bytes
    r = send(raw(m, admin.token), m, "POST", "/api/user/", data=body,
             headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "username")
    assert_still_serves(admin)


def test_a_hundred_thousand_unknown_fields_are_refused(admin, accounts_reset):
    m = accounts_reset
    body = {**NEW_USER, **{f"f{i}": i for i in range(100_000)}}
    r = send(raw(m, admin.token), m, "POST", "/api/user/", json=body)
    errors = assert_refused(r, 400, "f99999")
    assert errors["f0"] == "Unknown field."
    assert admin.get("/api/user/", limit=0)["meta"]["total_count"] == 1  # nothing created
    assert_still_serves(admin)


@pytest.mark.parametrize("depth", [900, 100_000])
@pytest.mark.parametrize("opener,closer", [("{\"a\":", "}"), ("[", "]")])
def test_deep_json_as_a_field_value_is_400(admin, accounts_reset, depth, opener, closer):
    """Deep enough to pass the parser (900) and to break it (100,000); the first must not
    break the validators or the audit summary that walk the value."""
    m = accounts_reset
    deep = opener * depth + "1" + closer * depth
    text = json.dumps(NEW_USER)[:-1] + f', "groups": {deep}}}'
    r = send(raw(m, admin.token), m, "POST", "/api/user/", data=text.encode(),
             headers={"Content-Type": "application/json"})
    assert_refused(r, 400)
    assert_still_serves(admin)


def test_a_refused_deep_body_is_still_audited(admin, accounts_reset):
    m = accounts_reset
    body = b"[" * 20_000 + b"]" * 20_000  # under the 64 KiB the audit summary parses
    r = send(raw(m, admin.token), m, "POST", "/api/user/", data=body,
             headers={"Content-Type": "application/json"})
    assert_refused(r, 400)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if admin.get("/api/audit_log/", outcome="refused", status=400)["objects"]:
            return
        time.sleep(0.1)
    raise AssertionError("the refused request left no audit record")


def test_a_body_far_over_the_limit_is_413_before_it_is_read(accounts_reset, admin):
    """Only the headers are sent: the answer must not wait for (or read) the body."""
    m = accounts_reset
    length = 4 * m.config.max_body_bytes + 1
    head, body = raw_request(m, f"POST /api/user/ HTTP/1.1\r\nHost: localhost\r\n"
                                f"Authorization: Bearer {admin.token}\r\n"
                                f"Content-Type: application/json\r\n"
                                f"Content-Length: {length}\r\n\r\n")
    assert int(head.split()[1]) == 413, head
    assert "exceeds" in json.loads(body)["__all__"]
    assert_still_serves(admin)


@pytest.mark.parametrize("path, check", [
    ("/apis/bos/v2/sessions", lambda doc: doc["status"] == 413 and "exceeds" in doc["detail"]),
    ("/v2/p1/sessions", lambda doc: "Too Large" in doc["title"]
     and "exceeds" in doc["description"]),
])
def test_an_oversized_declared_body_is_refused_in_the_family_shape(accounts_reset, admin,
                                                                    path, check):
    m = accounts_reset
    head, body = raw_request(m, f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
                                f"Content-Length: {10**15}\r\n\r\n")
    assert int(head.split()[1]) == 413, head
    assert check(json.loads(body)), body


def test_a_client_sending_a_body_far_over_the_limit_gets_413(accounts_reset, admin):
    """requests sends the body without waiting: the 413 must still reach it."""
    m = accounts_reset
    r = send(raw(m, admin.token), m, "POST", "/api/user/",
             data=b" " * (4 * m.config.max_body_bytes + 1),
             headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "exceeds" in r.json()["__all__"]
    assert_still_serves(admin)


def test_a_chunked_body_over_the_limit_gets_413_and_one_under_it_is_served(accounts_reset,
                                                                            admin):
    """A chunked body declares no length: its bytes are counted as they come."""
    m = accounts_reset
    piece = b" " * (m.config.max_body_bytes // 4)
    r = send(raw(m, admin.token), m, "POST", "/api/user/", data=iter([piece] * 16),
             headers={"Content-Type": "application/json"})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert "exceeds" in r.json()["__all__"] and "chunked" in r.json()["__all__"]
    user = {**NEW_USER, "username": "chunked-user"}
    r = send(raw(m, admin.token), m, "POST", "/api/user/", data=iter([json.dumps(user).encode()]),
             headers={"Content-Type": "application/json"})
    assert r.status_code == 201 and r.request.headers.get("Transfer-Encoding") == "chunked"
    assert_still_serves(admin)


WRONG_TYPES = [
    ("POST", "/api/user/", {**NEW_USER, "email": ["a@example.com"]}, "email"),
    ("POST", "/api/user/", {**NEW_USER, "first_name": {"$ne": ""}}, "first_name"),
    ("POST", "/api/user/", {**NEW_USER, "password1": 12345678, "password2": 12345678},
     "password1"),
    ("POST", "/api/registration_token/", {"profile": "compute_node", "credits": "many"},
     "credits"),
    ("POST", "/api/registration_token/", {"profile": "compute_node", "credits": 2**70},
     "credits"),
    ("POST", "/api/registration_token/", {"profile": "compute_node", "expiry": 12}, "expiry"),
    ("POST", "/api/registration_token/", {"profile": ["compute_node"]}, "profile"),
    ("POST", "/api/node/", {"hostname": "n1", "enabled": "yes"}, "enabled"),
    ("POST", "/api/node/", {"hostname": "n1", "groups": "compute"}, "groups"),
    ("POST", "/api/node/", {"hostname": "n1", "outlet": 2**70}, "outlet"),
    ("POST", "/api/node/", {"hostname": "n1", "host": "/api/host/99999999999999999999999/"},
     "host"),
    ("POST", "/api/node/", {"hostname": "n1", "outlet": True}, "outlet"),
    ("PATCH", "/api/node/", {"objects": [{"id": 2**70, "hostname": "n1"}]}, "objects"),
    ("PATCH", "/api/node/", {"objects": "all"}, "objects"),
    ("POST", "/api/power_control_type/", {"agent": "fence_apc", "name": "t",
                                          "max_outlets": 2**70}, "max_outlets"),
    ("POST", "/api/power_control_type/", {"agent": "fence_apc", "name": "t",
                                          "default_port": "twenty"}, "default_port"),
    ("POST", "/api/command/", {"message": "m", "jobs": "ForceRemoveHostJob"}, "jobs"),
    ("POST", "/api/command/", {"message": "m", "jobs": [
        {"class_name": "ForceRemoveHostJob", "args": {"host_id": 2**70}}]}, None),
    ("POST", "/api/session/", {"username": None, "password": {"a": 1}}, "username"),
]


@pytest.mark.parametrize("method,path,body,field", WRONG_TYPES,
                         ids=[f"{m} {p} {json.dumps(b)[:40]}" for m, p, b, _ in WRONG_TYPES])
def test_wrong_types_are_400_by_field(admin, accounts_reset, method, path, body, field):
    m = accounts_reset
    r = send(raw(m, admin.token), m, method, path, json=body)
    assert_refused(r, 400, field)
    assert_still_serves(admin)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -(2**64), 10**400])
def test_non_finite_and_enormous_numbers_are_400(admin, accounts_reset, value):
    """Python's parser takes NaN, Infinity and integers of any size: each is refused."""
    m = accounts_reset
    text = json.dumps({"profile": "compute_node"})[:-1] + f', "credits": {value!r}}}'
    text = text.replace("nan", "NaN").replace("inf", "Infinity")
    r = send(raw(m, admin.token), m, "POST", "/api/registration_token/", data=text.encode(),
             headers={"Content-Type": "application/json"})
    assert_refused(r, 400, "credits")
    assert_still_serves(admin)


# --- encodings -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/api/user/?order_by=%ff", "/api/user/?%ff=1", "/api/group/?name=%c3%28",
    "/api/user/%ff%fe/", "/api/user/?format=%80",
])
def test_invalid_utf8_in_the_url_is_refused(admin, accounts_reset, path):
    m = accounts_reset
    r = send(raw(m, admin.token), m, "GET", path)
    assert r.status_code in (400, 404), r.text
    assert_refused(r, r.status_code)
    assert_still_serves(admin)


def test_invalid_utf8_in_a_form_and_a_token(accounts_reset, admin):
    m = accounts_reset
    r = send(raw(m), m, "POST", "/auth/token", data=b"grant_type=password&username=%ff&password=x",
             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and isinstance(r.json(), dict), r.text
    r = send(raw(m), m, "GET", "/api/user/", headers={"Authorization": b"Bearer \xff\xfe"})
    assert_refused(r, 401)
    assert_still_serves(admin)


# --- ids -----------------------------------------------------------------------------------

BAD_IDS = ["..%2F..%2Fetc%2Fpasswd", "%2e%2e", "1%00", "1%27%20OR%20%271%27%3D%271", "-1", "0",
           str(2**63), "99999999999999999999999", "1e3", "0x1", "%20", "NaN"]
DETAIL_PATHS = ["/api/user/{}/", "/api/host/{}/", "/api/node/{}/", "/api/alert/{}/",
                "/api/command/{}/", "/api/job/{}/", "/api/registration_token/{}/",
                "/api/power_control_device/{}/"]


@pytest.mark.parametrize("template", DETAIL_PATHS)
def test_path_traversal_and_junk_ids_are_404(admin, accounts_reset, template):
    m = accounts_reset
    session = raw(m, admin.token)
    for bad in BAD_IDS:
        for method, body in (("GET", None), ("PUT", {}), ("DELETE", None)):
            r = send(session, m, method, template.format(bad), json=body)
            assert r.status_code in (404, 405), (method, bad, r.status_code, r.text)
            assert_refused(r, r.status_code)
    assert_still_serves(admin)


@pytest.mark.parametrize("target", ["/api/../../etc/passwd", "/api/user/../../../etc/passwd",
                                    "/api/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd",
                                    "/api/user/1/../../../tls/ca.key"])
def test_dot_segments_sent_raw_reach_no_file(accounts_reset, admin, target):
    """Sent as written (a client library would collapse the dots first)."""
    head, body = raw_request(accounts_reset, f"GET {target} HTTP/1.1\r\nHost: localhost\r\n"
                                             f"Authorization: Bearer {admin.token}\r\n\r\n")
    status = int(head.split()[1])
    assert status in (400, 404), head
    assert b"PRIVATE KEY" not in body and b"root:" not in body
    assert isinstance(json.loads(body), dict)
    assert_still_serves(admin)


# --- filters -------------------------------------------------------------------------------

MESSAGES = ["100% done", "under_score", "back\\slash", "star*glob?[x]",
            "quote'; DROP TABLE alert; --", "plain"]


@pytest.fixture
def messy_alerts(accounts_reset):
    def create():
        for i, text in enumerate(MESSAGES):
            alerts.raise_alert("HostContactAlert", "WARNING", text, "host", 1000 + i, text)
    accounts_reset.db(create)


@pytest.mark.parametrize("lookup,value,expected", [
    ("contains", "%", ["100% done"]),
    ("contains", "_", ["under_score"]),
    ("contains", "\\", ["back\\slash"]),
    ("contains", "*", ["star*glob?[x]"]),
    ("contains", "?", ["star*glob?[x]"]),
    ("contains", "[x]", ["star*glob?[x]"]),
    ("contains", "[a-z]", []),
    ("startswith", "%", []),
    ("endswith", "_", []),
    ("exact", "quote'; DROP TABLE alert; --", ["quote'; DROP TABLE alert; --"]),
    ("contains", "' OR '1'='1", []),
    ("contains", "'); DELETE FROM alert; --", []),
])
def test_sql_and_pattern_metacharacters_in_filters_match_literally(admin, messy_alerts,
                                                                   lookup, value, expected):
    param = "message" if lookup == "exact" else f"message__{lookup}"
    found = admin.get("/api/alert/", limit=0, **{param: value})["objects"]
    assert sorted(a["message"] for a in found) == expected
    assert admin.get("/api/alert/", limit=0)["meta"]["total_count"] == len(MESSAGES)


@pytest.mark.parametrize("params,field", [
    ({"id": "1 OR 1=1"}, "id"),
    ({"id__in": "1); DROP TABLE alert; --"}, "id__in"),
    ({"begin__gt": "now(); --"}, "begin__gt"),
    ({"message": "nul\x00byte"}, "message"),
    ({"order_by": "begin; DROP TABLE alert"}, "order_by"),
    ({"order_by": "-(SELECT 1)"}, "order_by"),
    ({"message__regex": ".*"}, "message__regex"),
    ({"alert_item_id__gt": str(2**70)}, "alert_item_id__gt"),
])
def test_injected_filters_and_orderings_are_400(admin, accounts_reset, messy_alerts, params,
                                                 field):
    m = accounts_reset
    r = send(raw(m, admin.token), m, "GET", "/api/alert/", params=params)
    assert_refused(r, 400, field)
    assert admin.get("/api/alert/", limit=0)["meta"]["total_count"] == len(MESSAGES)


# --- limit and offset ----------------------------------------------------------------------

LISTS = ["/api/user/", "/api/alert/", "/api/node/", "/api/command/", "/api/host/",
         "/api/audit_log/", "/api/power_control_type/"]


@pytest.mark.parametrize("path", LISTS)
def test_the_largest_limit_and_offset_answer_an_empty_page(admin, path):
    doc = admin.get(path, limit=q.MAX_INT, offset=q.MAX_INT)
    assert doc["objects"] == [] and doc["meta"]["offset"] == q.MAX_INT


@pytest.mark.parametrize("params,field", [
    ({"offset": str(2**40)}, "offset"), ({"offset": str(2**64)}, "offset"),
    ({"limit": "1e3"}, "limit"), ({"limit": "0x10"}, "limit"), ({"limit": " 5"}, "limit"),
    ({"limit": "\u0665"}, "limit"), ({"offset": ""}, "offset"), ({"limit": "9" * 5000}, "limit"),
])
@pytest.mark.parametrize("path", LISTS)
def test_absurd_limit_and_offset_are_400(admin, accounts_reset, path, params, field):
    m = accounts_reset
    r = send(raw(m, admin.token), m, "GET", path, params=params)
    assert_refused(r, 400, field)


# --- concurrent writes to one object -------------------------------------------------------

WRITERS = 8


def writer(manager, admin, method: str, path: str, body: dict):
    """One request of a race, on a connection of its own."""
    return lambda: send(raw(manager, admin.token), manager, method, path, json=body)


def race(calls) -> list[requests.Response]:
    """Run ``calls`` at once (each from its own connection)."""
    start = threading.Barrier(len(calls), timeout=TIMEOUT)

    def go(call):
        start.wait()
        return call()
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


def test_concurrent_patches_of_one_node_leave_one_whole_write(admin, accounts_reset):
    m = accounts_reset
    node = admin.post("/api/node/", {"hostname": "racer", "groups": ["g-start"]})
    bodies = [{"hostname": f"racer-{i}", "groups": [f"g{i}", f"g{i}-b"],
               "macs": [f"02:00:00:00:00:{i:02x}"], "role": "Compute" if i % 2 else "Storage"}
              for i in range(WRITERS)]
    answers = race([writer(m, admin, "PATCH", node["resource_uri"], b) for b in bodies])
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 409} and 200 in statuses, [r.text for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert_refused(r, 409)
    final = admin.get(node["resource_uri"])
    shown = {k: final[k] for k in ("hostname", "groups", "macs", "role")}
    assert shown in [{**b, "groups": sorted(b["groups"])} for b in bodies], shown


def test_concurrent_patches_of_only_the_lists_do_not_merge(admin, accounts_reset):
    """With no column of the node row changing, nothing else orders the writers."""
    m = accounts_reset
    node = admin.post("/api/node/", {"hostname": "lists-only"})
    bodies = [{"groups": [f"only{i}"], "macs": [f"02:00:00:00:01:{i:02x}"]}
              for i in range(WRITERS)]
    answers = race([writer(m, admin, "PATCH", node["resource_uri"], b) for b in bodies])
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    final = admin.get(node["resource_uri"])
    assert {"groups": final["groups"], "macs": final["macs"]} in bodies, final


def test_concurrent_claims_of_one_hostname_give_it_to_one_node(admin, accounts_reset):
    m = accounts_reset
    nodes = [admin.post("/api/node/", {"hostname": f"claimant-{i}"}) for i in range(WRITERS)]
    answers = race([writer(m, admin, "PATCH", n["resource_uri"], {"hostname": "wanted"})
                    for n in nodes])
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) == 1, [r.text for r in answers]
    for r in answers:
        if r.status_code != 200:
            assert r.status_code in (400, 409), r.text
            assert_refused(r, r.status_code, "hostname" if r.status_code == 400 else None)
    assert len(admin.get("/api/node/", hostname="wanted")["objects"]) == 1
    assert_still_serves(admin)


def test_concurrent_puts_of_one_user_keep_each_name_pair(admin, accounts_reset):
    m = accounts_reset
    user = admin.post("/api/user/", NEW_USER)
    bodies = [{"first_name": f"F{i}", "last_name": f"L{i}"} for i in range(WRITERS)]
    answers = race([writer(m, admin, "PUT", user["resource_uri"], b) for b in bodies])
    assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
    row = m.db(lambda: User.get_by_id(user["id"]))
    assert {"first_name": row.first_name, "last_name": row.last_name} in bodies


def test_concurrent_dismissals_of_one_alert(admin, accounts_reset, messy_alerts):
    m = accounts_reset
    alert_id = m.db(lambda: Alert.select().first().id)
    answers = race([writer(m, admin, "PATCH", f"/api/alert/{alert_id}/",
                           {"dismissed": i % 2 == 0}) for i in range(WRITERS)])
    assert {r.status_code for r in answers} <= {200, 204, 409}, [r.text for r in answers]
    assert isinstance(admin.get(f"/api/alert/{alert_id}/")["dismissed"], bool)


# --- a hostile agent -----------------------------------------------------------------------

def test_a_client_certificate_from_another_ca_is_refused(admin, accounts_reset, tmp_path):
    """A stranger CA forges a host's certificate down to its serial (the agent's identity on
    Connect): the TLS layer must refuse it before the serial is looked at."""
    m = accounts_reset
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    real = run_async(register(m.registration_address, m.ca_pem(), token["secret"],
                              "victim.example"))
    stranger = CertificateAuthority(str(tmp_path / "stranger"))
    genuine = x509.load_pem_x509_certificate(real.cert_pem)
    forged = (x509.CertificateBuilder().subject_name(genuine.subject)
              .issuer_name(stranger.ca_cert.subject).public_key(genuine.public_key())
              .serial_number(genuine.serial_number).not_valid_before(genuine.not_valid_before_utc)
              .not_valid_after(genuine.not_valid_after_utc)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
              .sign(stranger.ca_key, hashes.SHA256()))
    impostor = dataclasses.replace(real, cert_pem=forged.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        run_async(Peer(m.agent_address, impostor).run())
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
    assert not admin.get(f"/api/host/{real.host_id}/")["connected"]
    assert_still_serves(admin)


def run_async(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))
