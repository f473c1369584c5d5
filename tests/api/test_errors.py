"""Errors in each family's shape, and never a traceback unless in development mode."""

import pytest
import requests

from manager.http.base import BaseHandler


def session(manager, token=None):
    s = requests.Session()
    s.trust_env = False
    s.verify = manager.ca_path
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def test_unknown_iml_resource_is_404_in_iml_shape(admin, accounts_reset):
    r = session(accounts_reset, admin.token).get(accounts_reset.url + "/api/nothing/")
    assert r.status_code == 404
    assert r.json() == {"__all__": "No such resource: /api/nothing/"}


def test_missing_object_and_bad_id(admin, accounts_reset):
    s = session(accounts_reset, admin.token)
    for path in ("/api/user/9999/", "/api/user/abc/", "/api/user/..%2F..%2Fetc/"):
        r = s.get(accounts_reset.url + path)
        assert r.status_code == 404, path
        assert "__all__" in r.json()


def test_method_not_allowed_names_the_allowed(admin, accounts_reset):
    r = session(accounts_reset, admin.token).delete(accounts_reset.url + "/api/user/")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, POST"
    r = session(accounts_reset, admin.token).post(accounts_reset.url + "/healthz")
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET"


@pytest.mark.parametrize("body,content", [
    (b"{not json", "Malformed JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"[" * 100000 + b"]" * 100000, "Malformed JSON"),
])
def test_bad_json_is_400(admin, accounts_reset, body, content):
    r = session(accounts_reset, admin.token).post(
        accounts_reset.url + "/api/user/", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert content in r.json()["__all__"]


def test_oversized_body_is_413(admin, accounts_reset):
    limit = accounts_reset.config.max_body_bytes
    r = session(accounts_reset, admin.token).post(
        accounts_reset.url + "/api/user/", data=b" " * (limit + 1),
        headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "exceeds" in r.json()["__all__"]


def test_problem_json_family(admin, accounts_reset):
    r = session(accounts_reset, admin.token).get(accounts_reset.url + "/apis/bos/v2/nothing")
    assert r.status_code == 404
    assert r.headers["Content-Type"] == "application/problem+json"
    doc = r.json()
    assert doc["status"] == 404 and doc["title"] == "Not Found" and "detail" in doc


def test_freezer_family(admin, accounts_reset):
    r = session(accounts_reset, admin.token).get(accounts_reset.url + "/v2/p1/nothing")
    assert r.status_code == 404
    assert set(r.json()) == {"title", "description"}


def test_bearer_token_is_required_on_other_families(accounts_reset):
    r = session(accounts_reset).get(accounts_reset.url + "/apis/ims/v3/images")
    assert r.status_code == 404  # unknown paths are 404 whoever asks
    r = session(accounts_reset).get(accounts_reset.url + "/api/user/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_request_id_is_returned_and_echoed(admin, accounts_reset):
    s = session(accounts_reset, admin.token)
    assert len(s.get(accounts_reset.url + "/api/user/").headers["X-Request-Id"]) == 16
    r = s.get(accounts_reset.url + "/api/user/", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = s.get(accounts_reset.url + "/api/user/", headers={"X-Request-Id": "bad id\twith junk"})
    assert r.headers["X-Request-Id"] != "bad id\twith junk"


class Boom(BaseHandler):
    anonymous_methods = frozenset({"GET"})

    async def get(self):
        raise RuntimeError("secret internal detail")


@pytest.fixture
def boom(accounts_reset):
    """A route whose handler crashes (added once per manager; it precedes the wildcard 404)."""
    app = accounts_reset.manager.http_server.request_callback.app  # inside BodyLimit
    if not getattr(app, "_boom_added", False):
        app.add_handlers(r".*", [(r"/(?:api|apis/bos|v2)/boom", Boom,
                                  {"ctx": accounts_reset.manager.ctx})])
        app._boom_added = True
    return accounts_reset


@pytest.mark.parametrize("path,key", [("/api/boom", "error_message"), ("/apis/bos/boom", "detail"),
                                      ("/v2/boom", "description")])
def test_server_error_hides_the_traceback(boom, path, key, caplog):
    r = session(boom).get(boom.url + path)
    assert r.status_code == 500
    body = r.json()
    assert "secret internal detail" not in r.text and "traceback" not in body
    assert r.headers["X-Request-Id"] in body[key]
    assert any(r.headers["X-Request-Id"] in rec.getMessage() for rec in caplog.records)


def test_server_error_shows_the_traceback_in_dev_mode(boom):
    boom.config.values["dev"] = True
    try:
        r = session(boom).get(boom.url + "/api/boom")
    finally:
        boom.config.values["dev"] = False
    assert r.status_code == 500
    assert "secret internal detail" in r.json()["traceback"]
