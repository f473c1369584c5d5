"""Authentication on every family: bearer tokens, X-Auth-Token, IML sessions with CSRF."""

import datetime

import pytest
import requests

from api.client import Client, ShepherdError
from manager.db.accounts import ApiToken, User, WebSession
from tests.conftest import ADMIN_PASSWORD


def raw(manager) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = manager.ca_path
    return session


def test_anonymous_is_refused_outside_the_public_endpoints(anon):
    with pytest.raises(ShepherdError) as err:
        anon.get("/api/user/")
    assert err.value.status == 401
    assert anon.get("/healthz") == {"status": "ok"}
    assert anon.get("/version")["name"] == "shepherd"
    assert b"BEGIN CERTIFICATE" in anon.fetch_ca()


def test_token_grant_and_bearer_use(anon):
    doc = anon.login("admin", ADMIN_PASSWORD)
    assert doc["token_type"] == "Bearer"
    assert doc["expires_in"] == 12 * 3600
    assert doc["access_token"].startswith("shp_")
    assert anon.get("/api/user/")["meta"]["total_count"] == 1


def test_x_auth_token_header_is_accepted(admin, accounts_reset):
    session = raw(accounts_reset)
    r = session.get(accounts_reset.url + "/api/user/", headers={"X-Auth-Token": admin.token})
    assert r.status_code == 200


@pytest.mark.parametrize("form,error", [
    ({"grant_type": "password", "username": "admin", "password": "wrong-password"}, "invalid_grant"),
    ({"grant_type": "password", "username": "nobody", "password": ADMIN_PASSWORD}, "invalid_grant"),
    ({"grant_type": "password", "username": "admin"}, "invalid_request"),
    ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ({}, "unsupported_grant_type"),
])
def test_token_grant_refusals(accounts_reset, form, error):
    r = raw(accounts_reset).post(accounts_reset.url + "/auth/token", data=form)
    assert r.status_code == 400
    assert r.json()["error"] == error


def test_wrong_password_gives_no_token(anon):
    with pytest.raises(ShepherdError) as err:
        anon.login("admin", "not-the-password")
    assert err.value.status == 400
    assert "Invalid username or password" in err.value.message


def test_revoked_token_is_refused_and_says_so(admin):
    token = admin.token
    admin.logout()
    admin.token = token
    with pytest.raises(ShepherdError) as err:
        admin.get("/api/user/")
    assert err.value.status == 401
    assert "revoked" in err.value.message


def test_expired_token_is_refused_and_says_so(admin, accounts_reset):
    past = datetime.datetime(2000, 1, 1)
    accounts_reset.db(lambda: ApiToken.update(expires_at=past).execute())
    with pytest.raises(ShepherdError) as err:
        admin.get("/api/user/")
    assert err.value.status == 401
    assert "expired" in err.value.message


def test_unknown_token_is_refused(accounts_reset):
    client = Client(accounts_reset.url, token="shp_forged", verify=accounts_reset.ca_path)
    with pytest.raises(ShepherdError) as err:
        client.get("/api/user/")
    assert err.value.status == 401


def test_tokens_are_stored_only_as_digests(admin, accounts_reset):
    stored = accounts_reset.db(lambda: [t.token_hash for t in ApiToken.select()])
    assert admin.token not in stored
    assert all(len(h) == 64 for h in stored)


# --- IML sessions ------------------------------------------------------------------------

def open_session(manager) -> requests.Session:
    session = raw(manager)
    r = session.get(manager.url + "/api/session/")
    assert r.status_code == 200
    assert r.json() == {"read_enabled": False, "resource_uri": "/api/session/", "user": None}
    assert "csrftoken" in r.cookies and "sessionid" in r.cookies
    session.headers["X-CSRFToken"] = r.cookies["csrftoken"]
    return session


def test_example_client_flow(accounts_reset):
    """iml-api.md's example client: session, CSRF header, login, list."""
    session = open_session(accounts_reset)
    r = session.post(accounts_reset.url + "/api/session/",
                     json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 201
    assert r.json()["user"]["username"] == "admin"
    r = session.get(accounts_reset.url + "/api/user/")
    assert r.status_code == 200
    assert [u["username"] for u in r.json()["objects"]] == ["admin"]


def test_login_without_csrf_is_refused(accounts_reset):
    session = open_session(accounts_reset)
    del session.headers["X-CSRFToken"]
    r = session.post(accounts_reset.url + "/api/session/",
                     json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 401
    assert "CSRF" in r.json()["__all__"]


def test_login_with_wrong_password(accounts_reset):
    session = open_session(accounts_reset)
    r = session.post(accounts_reset.url + "/api/session/",
                     json={"username": "admin", "password": "wrong"})
    assert r.status_code == 403
    assert r.json() == {"__all__": "Authentication Failed."}


def test_login_with_missing_field(accounts_reset):
    session = open_session(accounts_reset)
    r = session.post(accounts_reset.url + "/api/session/", json={"username": "admin"})
    assert r.status_code == 400
    assert r.json() == {"password": "This field is required."}


def test_cookie_authenticated_write_needs_csrf(accounts_reset):
    session = open_session(accounts_reset)
    session.post(accounts_reset.url + "/api/session/",
                 json={"username": "admin", "password": ADMIN_PASSWORD}).raise_for_status()
    csrf = session.headers.pop("X-CSRFToken")
    url = accounts_reset.url + "/api/user/"
    body = {"username": "bob", "password1": "bob-password", "password2": "bob-password"}
    r = session.post(url, json=body)
    assert r.status_code == 401
    r = session.post(url, json=body, headers={"X-CSRFToken": "not-the-token"})
    assert r.status_code == 401
    r = session.post(url, json=body, headers={"X-CSRFToken": csrf})
    assert r.status_code == 201


def test_logout_ends_the_session(accounts_reset):
    session = open_session(accounts_reset)
    session.post(accounts_reset.url + "/api/session/",
                 json={"username": "admin", "password": ADMIN_PASSWORD}).raise_for_status()
    assert session.get(accounts_reset.url + "/api/session/").json()["read_enabled"] is True
    assert session.delete(accounts_reset.url + "/api/session/").status_code == 204
    assert session.get(accounts_reset.url + "/api/user/").status_code == 401


def test_session_key_is_renewed_at_login(accounts_reset):
    session = open_session(accounts_reset)
    before = session.cookies["sessionid"]
    session.post(accounts_reset.url + "/api/session/",
                 json={"username": "admin", "password": ADMIN_PASSWORD}).raise_for_status()
    assert session.cookies["sessionid"] != before


def test_repeated_failures_lock_the_name_out_even_for_the_right_password(accounts_reset):
    session = raw(accounts_reset)
    url = accounts_reset.url + "/auth/token"
    for _ in range(5):
        r = session.post(url, data={"grant_type": "password", "username": "admin", "password": "guess"})
        assert r.status_code == 400
    r = session.post(url, data={"grant_type": "password", "username": "admin",
                                "password": ADMIN_PASSWORD})
    assert r.status_code == 429 and r.json()["error"] == "slow_down"
    assert 1 <= int(r.headers["Retry-After"]) <= 31
    cookie_login = open_session(accounts_reset)
    r = cookie_login.post(accounts_reset.url + "/api/session/",
                          json={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 429 and "Too many failed logins" in r.json()["__all__"]
    accounts_reset.manager.ctx.throttle.clear()
    Client(accounts_reset.url, verify=accounts_reset.ca_path).login("admin", ADMIN_PASSWORD)


def test_failures_under_many_names_lock_the_address_out(accounts_reset):
    """Guessing across names (each under the per-name limit) is stopped per address."""
    m = accounts_reset
    per_address = m.config.login_failures_per_address
    assert per_address > m.config.login_failures_per_user
    session = raw(m)
    url = m.url + "/auth/token"
    try:
        for i in range(per_address):
            r = session.post(url, data={"grant_type": "password", "username": f"user{i}",
                                        "password": "guess"})
            assert r.status_code == 400, (i, r.text)
        r = session.post(url, data={"grant_type": "password", "username": "admin",
                                    "password": ADMIN_PASSWORD})
        assert r.status_code == 429 and r.json()["error"] == "slow_down"
        r = open_session(m).post(m.url + "/api/session/",
                                 json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 429 and "Too many failed logins" in r.json()["__all__"]
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        m.manager.ctx.throttle.clear()
    Client(m.url, verify=m.ca_path).login("admin", ADMIN_PASSWORD)


def test_session_login_fields_must_be_strings(accounts_reset):
    session = open_session(accounts_reset)
    r = session.post(accounts_reset.url + "/api/session/", json={"username": ["admin"], "password": 5})
    assert r.status_code == 400
    assert r.json() == {"username": "Must be a string.", "password": "Must be a string."}


def _logged_in(manager, username: str = "admin", password: str = ADMIN_PASSWORD
               ) -> requests.Session:
    session = open_session(manager)
    session.post(manager.url + "/api/session/",
                 json={"username": username, "password": password}).raise_for_status()
    return session


def test_an_expired_web_session_is_anonymous(accounts_reset):
    m = accounts_reset
    session = _logged_in(m)
    assert session.get(m.url + "/api/user/").status_code == 200
    past = datetime.datetime(2000, 1, 1)
    m.db(lambda: WebSession.update(expires_at=past).execute())
    assert session.get(m.url + "/api/user/").status_code == 401
    assert session.get(m.url + "/api/session/").json()["user"] is None


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_cookie_authenticated_write_method_needs_csrf(accounts_reset, admin, method):
    m = accounts_reset
    bob = admin.post("/api/user/", {"username": "bob", "password1": "bob-password",
                                    "password2": "bob-password"})
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})
    path, body = {"PUT": (f"/api/user/{bob['id']}/", {"first_name": "Robert"}),
                  "PATCH": (f"/api/registration_token/{token['id']}/", {"cancelled": True}),
                  "DELETE": (f"/api/user/{bob['id']}/", None)}[method]
    session = _logged_in(m)
    csrf = session.headers.pop("X-CSRFToken")
    refused = session.request(method, m.url + path, json=body)
    assert refused.status_code == 401 and "CSRF" in refused.json()["__all__"]
    assert admin.get(f"/api/user/{bob['id']}/")["first_name"] == ""  # nothing changed
    assert not admin.get(f"/api/registration_token/{token['id']}/")["cancelled"]
    allowed = session.request(method, m.url + path, json=body, headers={"X-CSRFToken": csrf})
    assert allowed.status_code in (200, 202, 204), allowed.text


def test_a_password_change_ends_the_users_other_web_sessions(accounts_reset, admin):
    m = accounts_reset
    bob = admin.post("/api/user/", {"username": "bob", "password1": "bob-password",
                                    "password2": "bob-password"})
    other = _logged_in(m, "bob", "bob-password")
    assert other.get(m.url + f"/api/user/{bob['id']}/").status_code == 200
    admin.put(f"/api/user/{bob['id']}/", {"new_password1": "new-bob-pass",
                                         "new_password2": "new-bob-pass"})
    assert other.get(m.url + f"/api/user/{bob['id']}/").status_code == 401
    assert m.db(lambda: WebSession.select().join(User).where(User.username == "bob").count()) == 0
