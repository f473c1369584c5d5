"""/api/node/ in bulk: ``PATCH`` of many nodes at once (created or updated by id, xname or
hostname, all or nothing, dry run, audited) and the 10,000-node import."""

import time

import pytest

from manager.db.inventory import Node, NodeGroup, NodeMac
from tests.api.test_nodes import LIST, bulk, xnames
from tests.api.test_registration import error


def test_bulk_creates_and_updates_by_id_xname_and_hostname(admin):
    first = bulk(admin, [{"xname": "x1c0s0b0n0", "groups": ["a"]},
                         {"xname": "x1c0s0b0n1"},
                         {"hostname": "login1"}])
    assert (first["created"], first["updated"], first["unchanged"], first["dry_run"]) == (
        3, 0, 0, False)
    n0, n1, login = first["objects"]
    again = bulk(admin, [{"xname": "x1c0s0b0n0", "role": "Storage"},          # by xname
                         {"id": int(n1.split("/")[-2]), "hostname": "nid01"},  # by id
                         {"resource_uri": login, "enabled": False},            # by URI
                         {"xname": "x1c0s0b0n2", "groups": ["b"]}])            # new
    assert (again["created"], again["updated"], again["unchanged"]) == (1, 3, 0)
    assert again["objects"][:3] == [n0, n1, login]
    by_name = {o["xname"] or o["hostname"]: o for o in admin.get(LIST)["objects"]}
    assert by_name["x1c0s0b0n0"]["role"] == "Storage" and by_name["x1c0s0b0n0"]["groups"] == ["a"]
    assert by_name["x1c0s0b0n1"]["hostname"] == "nid01"
    assert by_name["login1"]["enabled"] is False
    by_hostname = bulk(admin, [{"hostname": "login1", "sub_role": "UAN"}])
    assert (by_hostname["created"], by_hostname["updated"]) == (0, 1)
    assert admin.get(login)["sub_role"] == "UAN"


def test_bulk_leaves_nodes_described_as_they_are_untouched(admin):
    first = bulk(admin, [{"xname": "x1c0s0b0n0", "groups": ["b", "a"],
                          "macs": ["02:00:00:00:00:01"]},
                         {"xname": "x1c0s0b0n1", "role": "Storage"}])
    before = admin.get(LIST)["objects"]
    time.sleep(0.01)
    same = bulk(admin, [{"xname": "x1c0s0b0n0", "groups": ["a", "b"], "role": "compute"},
                        {"xname": "x1c0s0b0n1", "role": "Storage", "macs": []}])
    assert (same["created"], same["updated"], same["unchanged"]) == (0, 0, 2)
    assert same["objects"] == first["objects"]
    assert admin.get(LIST)["objects"] == before  # modified_at included
    moved = bulk(admin, [{"xname": "x1c0s0b0n0",
                          "macs": ["02:00:00:00:00:02", "02:00:00:00:00:01"]},
                         {"xname": "x1c0s0b0n1", "groups": ["a"]}])
    assert (moved["updated"], moved["unchanged"]) == (2, 0)
    after = {o["xname"]: o for o in admin.get(LIST)["objects"]}
    assert after["x1c0s0b0n0"]["macs"] == ["02:00:00:00:00:02", "02:00:00:00:00:01"]
    assert after["x1c0s0b0n0"]["groups"] == ["a", "b"] and after["x1c0s0b0n1"]["groups"] == ["a"]
    assert after["x1c0s0b0n1"]["modified_at"] > before[1]["modified_at"]


def test_bulk_is_all_or_nothing_and_names_the_object(admin):
    admin.post(LIST, {"xname": "x1c0s0b0n0"})
    objects = [{"xname": f"x1c0s1b0n{i}"} for i in range(20)]
    objects[12] = {"xname": "x1c0s1b0"}
    objects[15]["role"] = "Wizard"
    err = error(bulk, admin, objects)
    assert err.status == 400
    assert err.body == {"objects": "objects[12].xname: Not a node xname: "
                                   "x<cabinet>c<chassis>s<slot>b<bmc>n<node>, "
                                   "e.g. x3000c0s19b1n0.; objects[15].role: Must be one of: "
                                   "Compute, Service, System, Application, Storage, Management."}
    assert admin.get(LIST)["meta"]["total_count"] == 1


@pytest.mark.parametrize("objects,message", [
    ([{"xname": "x1c0s0b0n5"}, {"xname": "x1c0s0b0n5"}],
     "objects[1].xname: x1c0s0b0n5 is also given to objects[0]."),
    ([{"xname": "x1c0s0b0n5", "macs": ["02:00:00:00:00:01"]},
      {"xname": "x1c0s0b0n6", "macs": ["02:00:00:00:00:01"]}],
     "objects[1].macs: 02:00:00:00:00:01 is also given to objects[0]."),
    ([{"xname": "x1c0s0b0n0", "role": "Storage"}, {"id": "{n0}", "enabled": False}],
     "objects[1]: The same node as objects[0]."),
    ([{"id": 999999, "role": "Storage"}], "objects[0].id: No node 999999."),
    ([{"resource_uri": "/api/host/1/"}], "objects[0].id: Must be a /api/node/ URI or id."),
    ([{"xname": "x1c0s0b0n5", "hostname": "n0"}], "objects[0].hostname: n0 belongs to node {n0}."),
    (["x1c0s0b0n5"], "objects[0]: Must be an object."),
    ([{"xname": "x1c0s0b0n5", "host": "nowhere"}],
     "objects[0].host: Must be a /api/host/ URI or id."),
    ([{"xname": "x1c0s0b0n5", "host": "\u00b33"}],  # "³3": a digit to str.isdigit, not to int
     "objects[0].host: Must be a /api/host/ URI or id."),
])
def test_bulk_refusals(admin, objects, message):
    n0 = admin.post(LIST, {"xname": "x1c0s0b0n0", "hostname": "n0"})["id"]
    objects = [{k: n0 if v == "{n0}" else v for k, v in o.items()} if isinstance(o, dict) else o
               for o in objects]
    err = error(bulk, admin, objects)
    assert err.status == 400 and err.body == {"objects": message.replace("{n0}", str(n0))}
    assert admin.get(LIST)["meta"]["total_count"] == 1


@pytest.mark.parametrize("body,field", [
    ({}, "objects"), ({"objects": {"xname": "x1c0s0b0n0"}}, "objects"),
    ({"objects": [], "extra": 1}, "extra"), ({"objects": [], "dry_run": "yes"}, "dry_run"),
])
def test_bulk_body_refusals(admin, body, field):
    err = error(admin.patch, LIST, body)
    assert err.status == 400 and field in err.body


def test_bulk_swaps_hostnames_macs_and_outlets_within_a_request(admin):
    bulk(admin, [{"xname": "x1c0s0b0n0", "hostname": "a", "macs": ["02:00:00:00:00:0a"]},
                 {"xname": "x1c0s0b0n1", "hostname": "b", "macs": ["02:00:00:00:00:0b"]}])
    swapped = bulk(admin, [{"xname": "x1c0s0b0n0", "hostname": "b", "macs": ["02:00:00:00:00:0b"]},
                           {"xname": "x1c0s0b0n1", "hostname": "a", "macs": ["02:00:00:00:00:0a"]}])
    assert swapped["updated"] == 2
    nodes = {o["xname"]: o for o in admin.get(LIST)["objects"]}
    assert (nodes["x1c0s0b0n0"]["hostname"], nodes["x1c0s0b0n0"]["macs"]) == (
        "b", ["02:00:00:00:00:0b"])
    assert (nodes["x1c0s0b0n1"]["hostname"], nodes["x1c0s0b0n1"]["macs"]) == (
        "a", ["02:00:00:00:00:0a"])
    # a MAC may move to a node only if the node that has it gives it up in the same request
    err = error(bulk, admin, [{"xname": "x1c0s0b0n0", "macs": ["02:00:00:00:00:0a"]}])
    assert err.body == {"objects": "objects[0].macs: 02:00:00:00:00:0a belongs to node "
                                   f"{nodes['x1c0s0b0n1']['id']}."}


def test_bulk_dry_run_saves_nothing(admin, accounts_reset):
    admin.post(LIST, {"xname": "x1c0s0b0n0"})
    answer = admin.request("PATCH", LIST + "?dry_run=1", json_body={"objects": [
        {"xname": "x1c0s0b0n0", "role": "Storage"}, {"xname": "x1c0s0b0n1"}]}).json()
    assert answer == {"created": 1, "updated": 1, "unchanged": 0, "dry_run": True}
    assert xnames(admin.get(LIST)) == ["x1c0s0b0n0"]
    assert admin.get(LIST)["objects"][0]["role"] == "Compute"
    err = error(bulk, admin, [{"xname": "bad"}], dry_run=True)
    assert err.status == 400 and "objects[0].xname" in err.body["objects"]


def test_bulk_writes_are_audited(admin):
    bulk(admin, [{"xname": "x1c0s0b0n0"}])
    record = admin.get("/api/audit_log/", object_type="node", order_by="-id")["objects"][0]
    assert (record["method"], record["status"], record["outcome"]) == ("PATCH", 200, "ok")
    assert "x1c0s0b0n0" in record["summary"]


# --- 10,000 nodes ---------------------------------------------------------------------------

def rack_nodes(count, role="Compute"):
    """256 nodes a cabinet (4 chassis of 32 slots of 2 nodes), in three groups each."""
    return [{"xname": f"x{1000 + i // 256}c{i // 64 % 4}s{i // 2 % 32}b0n{i % 2}",
             "hostname": f"nid{i:06d}", "role": role,
             "groups": [f"rack{i // 256}", "all", f"slot{i % 7}"], "enabled": i % 10 != 0,
             "macs": ["02:00:00:" + ":".join(f"{i >> s & 255:02x}" for s in (16, 8, 0))],
             "architecture": "x86_64"} for i in range(count)]


# a bound that only catches a hang: 10,000 nodes take 5-7 s alone on the 2-core CI machine,
# and once took 18 s late in a full run; the printed figures are for reading, not asserting
HANG = 45


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def test_ten_thousand_nodes_in_one_request(admin, accounts_reset):
    admin.timeout = 60
    created, seconds = timed(bulk, admin, rack_nodes(10_000))
    print(f"\n10,000-node bulk create: {seconds:.2f} s")
    assert (created["created"], created["updated"]) == (10_000, 0)
    assert seconds < HANG
    updated, seconds = timed(bulk, admin, rack_nodes(10_000, role="Application"))
    print(f"10,000-node bulk update: {seconds:.2f} s")
    assert (updated["created"], updated["updated"]) == (0, 10_000)
    assert updated["objects"] == created["objects"]
    assert seconds < HANG
    counts = accounts_reset.db(lambda: (Node.select().count(), NodeGroup.select().count(),
                                        NodeMac.select().count()))
    assert counts == (10_000, 30_000, 10_000)
    same, seconds = timed(bulk, admin, rack_nodes(10_000, role="Application"))
    print(f"10,000-node bulk re-import, nothing changed: {seconds:.2f} s")
    assert (same["created"], same["updated"], same["unchanged"]) == (0, 0, 10_000)
    assert seconds < 10

    nodes = rack_nodes(10_000)
    for params, total in (
            ({"role": "Application"}, 10_000), ({"role": "compute"}, 0),
            ({"groups": "rack17"}, sum("rack17" in n["groups"] for n in nodes)),
            ({"groups": "slot3", "enabled": "false"},
             sum("slot3" in n["groups"] and not n["enabled"] for n in nodes)),
            ({"xname__startswith": "x1038c3"},
             sum(n["xname"].startswith("x1038c3") for n in nodes)),
            ({"macs": "02:00:00:00:27:0f"}, 1)):
        admin.get(LIST, **params)  # warm
        listing, seconds = timed(admin.get, LIST, **params)
        print(f"GET /api/node/ {params}: {seconds * 1000:.1f} ms ({total} matching)")
        assert listing["meta"]["total_count"] == total
        assert seconds < 0.5
    everything, seconds = timed(admin.get, LIST, groups="rack3", limit=0, order_by="xname")
    print(f"GET /api/node/ groups=rack3 limit=0 order_by=xname: {seconds * 1000:.1f} ms")
    assert len(everything["objects"]) == 256 and seconds < 1
    assert everything["objects"][0]["xname"] == "x1003c0s0b0n0"
