"""/api/user/ and /api/group/: who may change what (iml-api.md "user", "group")."""

import pytest

from api.client import Client, ShepherdError
from manager.db.accounts import User
from tests.conftest import USER_PASSWORD

NEW = {"username": "carol", "password1": "carol-password", "password2": "carol-password",
       "email": "carol@example.com", "first_name": "Carol", "last_name": "Jones",
       "groups": ["/api/group/2/"]}


def uri_of(client, username):
    return next(u["resource_uri"] for u in client.get("/api/user/", limit=0)["objects"]
                if u["username"] == username)


def error(call, *args, **kwargs):
    with pytest.raises(ShepherdError) as err:
        call(*args, **kwargs)
    return err.value


def test_superuser_creates_a_user(admin, accounts_reset):
    doc = admin.post("/api/user/", NEW)
    assert doc["username"] == "carol"
    assert doc["full_name"] == "Carol Jones"
    assert doc["resource_uri"] == f"/api/user/{doc['id']}/"
    assert [g["name"] for g in doc["groups"]] == ["filesystem_administrators"]
    assert doc["is_superuser"] is False
    assert not {"password1", "password2", "new_password1", "password_hash"} & set(doc)
    stored = accounts_reset.db(lambda: User.get(User.username == "carol").password_hash)
    assert stored.startswith("scrypt$") and "carol-password" not in stored
    Client(accounts_reset.url, verify=accounts_reset.ca_path).login("carol", "carol-password")


@pytest.mark.parametrize("change,field", [
    ({"password2": "something-else"}, "password2"),
    ({"password1": "", "password2": ""}, "password1"),
    ({"password1": "short", "password2": "short"}, "password1"),
    ({"username": "has space"}, "username"),
    ({"username": "x" * 31}, "username"),
    ({"username": "admin"}, "username"),
    ({"email": "not-an-email"}, "email"),
    ({"groups": ["/api/group/999/"]}, "groups"),
    ({"groups": ["no-such-group"]}, "groups"),
    ({"groups": "superusers"}, "groups"),
    ({"shoe_size": 42}, "shoe_size"),
])
def test_invalid_user_is_refused_by_field(admin, change, field):
    err = error(admin.post, "/api/user/", {**NEW, **change})
    assert err.status == 400
    assert field in err.body


def test_groups_may_be_given_as_objects_or_names(admin):
    doc = admin.post("/api/user/", {**NEW, "groups": [{"name": "superusers"}, "filesystem_users"]})
    assert {g["name"] for g in doc["groups"]} == {"superusers", "filesystem_users"}
    assert doc["is_superuser"] is True


def test_only_superusers_create_users(make_user):
    alice = make_user("alice", "filesystem_administrators")
    assert error(alice.post, "/api/user/", NEW).status == 403


def test_a_user_changes_their_own_names_but_not_another(make_user, admin):
    alice = make_user("alice", "filesystem_users")
    me = alice.get("/api/user/", order_by="username")["objects"][1]
    assert me["username"] == "alice"
    me["first_name"] = "Alice"
    assert alice.put(me["resource_uri"], me)["full_name"] == "Alice"
    admin_doc = alice.get("/api/user/", order_by="username")["objects"][0]
    admin_doc["first_name"] = "Mallory"
    assert error(alice.put, admin_doc["resource_uri"], admin_doc).status == 403


def test_only_superusers_change_groups(make_user, admin):
    alice = make_user("alice", "filesystem_users")
    uri = uri_of(admin, "alice")
    assert error(alice.put, uri, {"groups": ["superusers"]}).status == 403
    # sending back the unchanged groups (a client PUTs the whole object) is fine
    alice.put(uri, alice.get(uri))
    doc = admin.put(uri, {"groups": ["filesystem_administrators"]})
    assert [g["name"] for g in doc["groups"]] == ["filesystem_administrators"]


def test_username_cannot_change(admin):
    uri = admin.get("/api/user/")["objects"][0]["resource_uri"]
    err = error(admin.put, uri, {"username": "root"})
    assert err.status == 400 and "username" in err.body


def test_password_change_revokes_other_credentials(make_user, accounts_reset):
    alice = make_user("alice", "filesystem_users")
    other_login = Client(accounts_reset.url, verify=accounts_reset.ca_path)
    other_login.login("alice", USER_PASSWORD)
    uri = uri_of(alice, "alice")
    err = error(alice.put, uri, {"new_password1": "fresh-password", "new_password2": "other"})
    assert err.status == 400 and "new_password2" in err.body
    alice.put(uri, {"new_password1": "fresh-password", "new_password2": "fresh-password"})
    assert alice.get(uri)["username"] == "alice"  # the token that made the change still works
    assert error(other_login.get, uri).status == 401
    Client(accounts_reset.url, verify=accounts_reset.ca_path).login("alice", "fresh-password")


def test_superuser_resets_another_users_password(make_user, admin, accounts_reset):
    alice = make_user("alice", "filesystem_users")
    uri = uri_of(admin, "alice")
    admin.put(uri, {"new_password1": "reset-password", "new_password2": "reset-password"})
    assert error(alice.get, uri).status == 401


def test_delete_user(make_user, admin):
    alice = make_user("alice", "filesystem_users")
    uri = uri_of(admin, "alice")
    me_uri = uri_of(admin, "admin")
    assert error(alice.delete, me_uri).status == 403
    assert error(admin.delete, me_uri).status == 400
    admin.delete(uri)
    assert error(admin.get, uri).status == 404
    assert error(alice.get, "/api/user/").status == 401


def test_user_list_ordering_and_refused_filters(admin):
    for name in ("zed", "bea", "mia"):
        admin.post("/api/user/", {**NEW, "username": name, "email": f"{name}@example.com"})
    names = [u["username"] for u in admin.get("/api/user/", order_by="-username")["objects"]]
    assert names == ["zed", "mia", "bea", "admin"]
    emails = [u["email"] for u in admin.get("/api/user/", order_by="email")["objects"]]
    assert emails == ["", "bea@example.com", "mia@example.com", "zed@example.com"]
    assert error(admin.get, "/api/user/", username="zed").status == 400
    assert error(admin.get, "/api/user/", order_by="first_name").status == 400


def test_groups_are_read_only_and_filterable(admin):
    names = [g["name"] for g in admin.get("/api/group/", order_by="name")["objects"]]
    assert names == ["filesystem_administrators", "filesystem_users", "superusers"]
    assert [g["name"] for g in admin.get("/api/group/", name__iexact="SUPERUSERS")["objects"]] == ["superusers"]
    assert admin.get("/api/group/", name="Superusers")["objects"] == []
    err = error(admin.get, "/api/group/", name__startswith="s")
    assert err.status == 400 and "name__startswith" in err.body
    assert error(admin.post, "/api/group/", {"name": "x"}).status == 405


def test_a_trailing_newline_is_not_a_valid_username(admin):
    err = error(admin.post, "/api/user/", {**NEW, "username": "carol\n"})
    assert err.status == 400 and "username" in err.body
