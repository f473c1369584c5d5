"""IML list conventions: meta, limit/offset, next/previous, order_by, schema and index."""

from urllib.parse import parse_qs, urlparse

import pytest

from api.client import ShepherdError
from manager.db.accounts import User


@pytest.fixture
def thirty_users(admin, accounts_reset, password_hashes):
    rows = [{"username": f"user{i:02d}", "password_hash": "x", "email": f"u{i:02d}@example.com"}
            for i in range(30)]
    accounts_reset.db(lambda: User.insert_many(rows).execute())
    return admin


def test_default_page_and_meta(thirty_users):
    doc = thirty_users.get("/api/user/", order_by="username")
    meta = doc["meta"]
    assert (meta["limit"], meta["offset"], meta["total_count"], meta["previous"]) == (20, 0, 31, None)
    assert len(doc["objects"]) == 20
    nxt = urlparse(meta["next"])
    assert nxt.path == "/api/user/"
    assert parse_qs(nxt.query) == {"order_by": ["username"], "limit": ["20"], "offset": ["20"]}
    assert all(o["resource_uri"] == f"/api/user/{o['id']}/" for o in doc["objects"])


def test_following_next_and_previous(thirty_users):
    first = thirty_users.get("/api/user/", order_by="username", limit=12)
    second = thirty_users.get(first["meta"]["next"])
    third = thirty_users.get(second["meta"]["next"])
    assert third["meta"]["next"] is None
    names = [o["username"] for page in (first, second, third) for o in page["objects"]]
    assert names == ["admin"] + [f"user{i:02d}" for i in range(30)]
    back = thirty_users.get(third["meta"]["previous"])
    assert back["objects"] == second["objects"]


def test_limit_zero_returns_everything(thirty_users):
    doc = thirty_users.get("/api/user/", limit=0)
    assert len(doc["objects"]) == 31
    assert doc["meta"]["limit"] == 0 and doc["meta"]["next"] is None


def test_offset_beyond_the_end(thirty_users):
    doc = thirty_users.get("/api/user/", offset=1000)
    assert doc["objects"] == [] and doc["meta"]["total_count"] == 31


def test_iteration_pages_transparently(thirty_users):
    assert len(list(thirty_users.iter_objects("/api/user/", page_size=7))) == 31


def test_reverse_ordering(thirty_users):
    doc = thirty_users.get("/api/user/", order_by="-email", limit=3)
    assert [o["email"] for o in doc["objects"]] == [f"u{i}@example.com" for i in (29, 28, 27)]


@pytest.mark.parametrize("params,key", [
    ({"limit": "ten"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"offset": "-5"}, "offset"),
    ({"limit": str(2**40)}, "limit"),
    ({"order_by": "password_hash"}, "order_by"),
    ({"is_superuser": "true"}, "is_superuser"),
    ({"id__in": "1"}, "id__in"),
    ({"format": "xml"}, "format"),
])
def test_bad_list_arguments_are_400_naming_the_argument(thirty_users, params, key):
    with pytest.raises(ShepherdError) as err:
        thirty_users.get("/api/user/", **params)
    assert err.value.status == 400
    assert list(err.value.body) == [key]


def test_format_json_is_accepted(thirty_users):
    assert thirty_users.get("/api/user/", format="json")["meta"]["total_count"] == 31


def test_index_lists_resources_with_schema_links(admin):
    index = admin.get("/api/")
    assert index["user"] == {"list_endpoint": "/api/user/", "schema": "/api/user/schema/"}
    assert index["group"] == {"list_endpoint": "/api/group/", "schema": "/api/group/schema/"}


def test_schema_describes_fields_filters_and_methods(admin):
    schema = admin.get("/api/group/schema/")
    assert schema["filtering"] == {"name": ["exact", "iexact"]}
    assert schema["ordering"] == ["name"]
    assert schema["allowed_list_http_methods"] == ["get"]
    assert set(schema["fields"]) == {"id", "name", "resource_uri"}
    user = admin.get("/api/user/schema/")
    assert user["allowed_detail_http_methods"] == ["get", "put", "delete"]
    assert user["fields"]["password1"]["readonly"] is False
    assert user["fields"]["full_name"]["readonly"] is True
