"""/api/node/: the node inventory — fields, filters, ordering, single writes, and compute
agents becoming nodes when they register (bulk writes: test_nodes_bulk.py)."""

import time

import grpc
import pytest

from manager.db.hosts import Host, ServerProfile
from manager.db.inventory import Node, NodeGroup, NodeMac
from protos import agent_pb2, agent_pb2_grpc
from tests.api.test_registration import error, onboard, run, wait_for_command
from tests.protocol_peer import make_csr

NODE_FIELDS = {"architecture", "created_at", "enabled", "groups", "host", "hostname", "id",
               "macs", "modified_at", "outlet", "resource_uri", "role", "sub_role", "xname"}
LIST = "/api/node/"


def ids(listing):
    return [o["id"] for o in listing["objects"]]


def xnames(listing):
    return [o["xname"] or o["hostname"] for o in listing["objects"]]


def bulk(client, objects, **extra):
    return client.patch(LIST, {"objects": objects, **extra})


# --- one node -------------------------------------------------------------------------------

def test_node_fields_detail_and_schema(admin):
    node = admin.post(LIST, {"xname": "x3000c0s19b1n0", "hostname": "nid000001",
                             "role": "Compute", "sub_role": "Worker", "groups": ["rack3", "gpu"],
                             "macs": ["B4:2E:99:00:01:10"], "architecture": "aarch64"})
    assert set(node) == NODE_FIELDS
    assert node["resource_uri"] == f"/api/node/{node['id']}/"
    assert (node["xname"], node["hostname"], node["role"], node["sub_role"]) == (
        "x3000c0s19b1n0", "nid000001", "Compute", "Worker")
    assert node["groups"] == ["gpu", "rack3"] and node["macs"] == ["b4:2e:99:00:01:10"]
    assert node["enabled"] is True and node["architecture"] == "aarch64"
    assert node["host"] is None and node["outlet"] is None
    assert node["created_at"] == node["modified_at"] and node["created_at"].endswith("+00:00")
    assert admin.get(node["resource_uri"]) == node

    schema = admin.get("/api/node/schema/")
    assert set(schema["fields"]) == NODE_FIELDS
    assert schema["allowed_list_http_methods"] == ["get", "post", "patch"]
    assert schema["allowed_detail_http_methods"] == ["get", "put", "patch", "delete"]
    assert schema["ordering"] == ["xname", "hostname", "id"]
    assert schema["filtering"] == {
        "architecture": ["exact", "in"], "enabled": ["exact"], "groups": ["exact", "in"],
        "host": ["exact", "isnull"], "hostname": ["exact", "in", "startswith"],
        "id": ["exact", "in"], "macs": ["exact"], "outlet": ["exact", "isnull"],
        "role": ["exact", "in"], "sub_role": ["exact", "in"],
        "xname": ["exact", "in", "startswith"]}
    writable = {name for name, f in schema["fields"].items() if not f["readonly"]}
    assert writable == {"architecture", "enabled", "groups", "host", "hostname", "macs",
                        "outlet", "role", "sub_role", "xname"}
    assert "nodes" not in admin.get("/api/") and "node" in admin.get("/api/")


def test_defaults_and_how_values_are_written(admin):
    node = admin.post(LIST, {"xname": "X03000C0S07B0N01", "role": "application",
                             "sub_role": "uan", "groups": ["a", "b", "a"],
                             "macs": ["b42e99000111", "b4-2e-99-00-01-12", "b42e.9900.0113"]})
    assert node["xname"] == "x3000c0s7b0n1"
    assert (node["role"], node["sub_role"]) == ("Application", "UAN")
    assert node["groups"] == ["a", "b"]
    assert node["macs"] == ["b4:2e:99:00:01:11", "b4:2e:99:00:01:12", "b4:2e:99:00:01:13"]
    plain = admin.post(LIST, {"hostname": "login1.example"})
    assert (plain["xname"], plain["role"], plain["sub_role"], plain["enabled"],
            plain["architecture"], plain["groups"], plain["macs"]) == (
        None, "Compute", "", True, "x86_64", [], [])


@pytest.mark.parametrize("body,field,message", [
    ({"xname": "x3000c0s19n0"}, "xname", "Not a node xname"),
    ({"xname": "x3000c0s19b1"}, "xname", "Not a node xname"),
    ({"xname": 3000}, "xname", "Not a node xname"),
    ({"hostname": "bad host"}, "hostname", "Not a valid host name."),
    ({"xname": "x1c0s0b0n0", "role": "Wizard"}, "role", "Must be one of: Compute, Service"),
    ({"xname": "x1c0s0b0n0", "sub_role": "Boss"}, "sub_role", "Must be one of: Worker"),
    ({"xname": "x1c0s0b0n0", "architecture": "i386"}, "architecture", "Must be one of: x86_64"),
    ({"xname": "x1c0s0b0n0", "enabled": "yes"}, "enabled", "Must be true or false."),
    ({"xname": "x1c0s0b0n0", "groups": "rack3"}, "groups", "Must be a list of group names."),
    ({"xname": "x1c0s0b0n0", "groups": ["rack 3"]}, "groups", "Not allowed: letters"),
    ({"xname": "x1c0s0b0n0", "groups": [""]}, "groups", "may not be blank"),
    ({"xname": "x1c0s0b0n0", "macs": ["b4:2e:99:00:01"]}, "macs", "Not a MAC address"),
    ({"xname": "x1c0s0b0n0", "macs": ["01:00:5e:00:00:01"]}, "macs", "multicast or null"),
    ({"xname": "x1c0s0b0n0", "macs": ["00:00:00:00:00:00"]}, "macs", "multicast or null"),
    ({"xname": "x1c0s0b0n0", "macs": "b4:2e:99:00:01:10"}, "macs", "Must be a list"),
    ({"xname": "x1c0s0b0n0", "outlet": 999999}, "outlet", "No outlet 999999."),
    ({"xname": "x1c0s0b0n0", "outlet": "/api/host/1/"}, "outlet", "Must be a /api/power_"),
    ({"xname": "x1c0s0b0n0", "host": "/api/host/999999/"}, "host", "No host 999999."),
    ({"xname": "x1c0s0b0n0", "colour": "red"}, "colour", "Unknown field."),
    ({"role": "Compute"}, "xname", "A node needs an xname or a hostname."),
    ({"xname": None, "hostname": ""}, "xname", "A node needs an xname or a hostname."),
])
def test_create_refusals(admin, body, field, message):
    err = error(admin.post, LIST, body)
    assert err.status == 400 and message in err.body[field], err.body
    assert admin.get(LIST)["objects"] == []


def test_xname_hostname_and_macs_belong_to_one_node(admin):
    first = admin.post(LIST, {"xname": "x1c0s0b0n0", "hostname": "n0",
                              "macs": ["02:00:00:00:00:01"]})
    for body, field in (({"xname": "x1c0s0b0n0"}, "xname"),
                        ({"xname": "x1c0s0b0n1", "hostname": "n0"}, "hostname"),
                        ({"xname": "x1c0s0b0n1", "macs": ["02:00:00:00:00:01"]}, "macs")):
        err = error(admin.post, LIST, body)
        assert err.status == 400
        assert err.body == {field: f"{body[field] if field != 'macs' else body['macs'][0]} "
                                   f"belongs to node {first['id']}."}


def test_put_and_patch_change_only_what_they_give(admin):
    node = admin.post(LIST, {"xname": "x1c0s0b0n0", "groups": ["a"], "macs": ["02:00:00:00:00:01"]})
    time.sleep(0.01)
    changed = admin.put(node["resource_uri"], {"role": "Storage", "groups": ["b", "c"]})
    assert (changed["role"], changed["groups"], changed["macs"]) == (
        "Storage", ["b", "c"], ["02:00:00:00:00:01"])
    assert changed["modified_at"] > node["modified_at"]
    assert changed["created_at"] == node["created_at"]
    patched = admin.patch(node["resource_uri"], {"enabled": False, "macs": [], "hostname": "n0"})
    assert (patched["enabled"], patched["macs"], patched["hostname"]) == (False, [], "n0")
    # a GET, edited, can be PUT back: read-only fields are ignored
    edited = {**patched, "sub_role": "Worker", "id": 424242, "created_at": "2001-01-01T00:00:00"}
    assert admin.put(node["resource_uri"], edited)["sub_role"] == "Worker"
    assert admin.put(node["resource_uri"], {"xname": None})["xname"] is None
    err = error(admin.put, node["resource_uri"], {"hostname": None})
    assert err.status == 400 and err.body == {"xname": "A node needs an xname or a hostname."}
    assert error(admin.put, "/api/node/999999/", {"role": "Storage"}).status == 404


def test_delete_removes_the_node_with_its_groups_and_macs(admin, accounts_reset):
    node = admin.post(LIST, {"xname": "x1c0s0b0n0", "groups": ["a"], "macs": ["02:00:00:00:00:01"]})
    admin.delete(node["resource_uri"])
    assert error(admin.get, node["resource_uri"]).status == 404
    assert error(admin.delete, node["resource_uri"]).status == 404
    assert accounts_reset.db(lambda: (NodeGroup.select().count(),
                                      NodeMac.select().count())) == (0, 0)
    # its MAC is free again
    admin.post(LIST, {"xname": "x1c0s0b0n1", "macs": ["02:00:00:00:00:01"]})


# --- listing --------------------------------------------------------------------------------

@pytest.fixture
def six_nodes(admin, accounts_reset):
    """Nodes created out of xname order; "h" and "i" have no xname."""
    host_id = accounts_reset.db(lambda: make_host("agent.example").id)
    answer = bulk(admin, [
        {"xname": "x3000c0s10b0n0", "hostname": "nid10", "groups": ["rack3", "gpu"],
         "macs": ["02:00:00:00:00:10"]},
        {"xname": "x3000c0s2b0n0", "hostname": "nid02", "groups": ["rack3"], "enabled": False},
        {"xname": "x3000c0s2b0n1", "hostname": "nid03", "role": "Application",
         "sub_role": "UAN", "architecture": "aarch64", "host": f"/api/host/{host_id}/"},
        {"xname": "x1000c1s0b0n0", "hostname": "stor1", "role": "Storage", "groups": ["lustre"]},
        {"hostname": "login2", "role": "Application", "sub_role": "UAN"},
        {"hostname": "login1", "role": "Management", "enabled": False},
    ])
    names = ["s10", "s2n0", "s2n1", "c1", "login2", "login1"]
    return dict(zip(names, [int(u.split("/")[-2]) for u in answer["objects"]], strict=True)) | {
        "host": host_id}


@pytest.mark.parametrize("params,expected", [
    ({"role": "Compute"}, ["s10", "s2n0"]),
    ({"role": "compute"}, ["s10", "s2n0"]),
    ({"role__in": ["storage", "Management"]}, ["c1", "login1"]),
    ({"role": "Wizard"}, []),
    ({"sub_role": "UAN"}, ["s2n1", "login2"]),
    ({"sub_role__in": ["uan", "Worker"]}, ["s2n1", "login2"]),
    ({"groups": "rack3"}, ["s10", "s2n0"]),
    ({"groups": "gpu"}, ["s10"]),
    ({"groups__in": ["gpu", "lustre"]}, ["s10", "c1"]),
    ({"groups": "nothing"}, []),
    ({"enabled": "false"}, ["s2n0", "login1"]),
    ({"enabled": "true", "role": "Compute"}, ["s10"]),
    ({"xname": "x3000c0s2b0n1"}, ["s2n1"]),
    ({"xname": "X3000C0S02B0N01"}, ["s2n1"]),
    ({"xname__in": ["x3000c0s2b0n0", "x1000c1s0b0n0"]}, ["s2n0", "c1"]),
    ({"xname__startswith": "x3000c0s2"}, ["s2n0", "s2n1"]),
    ({"hostname": "nid02"}, ["s2n0"]),
    ({"hostname__in": ["login1", "nid10"]}, ["s10", "login1"]),
    ({"hostname__startswith": "login"}, ["login2", "login1"]),
    ({"architecture": "aarch64"}, ["s2n1"]),
    ({"architecture__in": ["x86_64"]}, ["s10", "s2n0", "c1", "login2", "login1"]),
    ({"macs": "02-00-00-00-00-10"}, ["s10"]),
    ({"host__isnull": "false"}, ["s2n1"]),
    ({"outlet__isnull": "true", "role": "Storage"}, ["c1"]),
])
def test_node_filters(admin, six_nodes, params, expected):
    listing = admin.get(LIST, **params)
    assert ids(listing) == [six_nodes[n] for n in expected]
    assert listing["meta"]["total_count"] == len(expected)


def test_host_id_and_outlet_filters(admin, six_nodes):
    host = six_nodes["host"]
    assert ids(admin.get(LIST, host=host)) == [six_nodes["s2n1"]]
    assert ids(admin.get(LIST, host=f"/api/host/{host}/")) == [six_nodes["s2n1"]]
    assert ids(admin.get(LIST, outlet=999)) == []
    assert ids(admin.get(LIST, id__in=[six_nodes["c1"], six_nodes["s10"]])) == [
        six_nodes["s10"], six_nodes["c1"]]


@pytest.mark.parametrize("order,expected", [
    ("xname", ["c1", "s2n0", "s2n1", "s10", "login1", "login2"]),
    ("-xname", ["login2", "login1", "s10", "s2n1", "s2n0", "c1"]),
    ("hostname", ["login1", "login2", "s2n0", "s2n1", "s10", "c1"]),
    ("-id", ["login1", "login2", "c1", "s2n1", "s2n0", "s10"]),
])
def test_node_ordering(admin, six_nodes, order, expected):
    assert ids(admin.get(LIST, order_by=order)) == [six_nodes[n] for n in expected]


@pytest.mark.parametrize("params,param", [
    ({"label": "x"}, "label"),
    ({"role__startswith": "C"}, "role__startswith"),
    ({"groups__contains": "r"}, "groups__contains"),
    ({"enabled": "perhaps"}, "enabled"),
    ({"order_by": "role"}, "order_by"),
])
def test_refused_node_queries(admin, params, param):
    err = error(admin.get, LIST, **params)
    assert err.status == 400 and list(err.body) == [param]


# --- agents ---------------------------------------------------------------------------------

def test_a_registered_compute_agent_becomes_a_node(admin, accounts_reset):
    identity = onboard(accounts_reset, admin, "cn1.example")
    node, = admin.get(LIST, hostname="cn1.example")["objects"]
    assert (node["host"], node["role"], node["enabled"], node["xname"]) == (
        f"/api/host/{identity.host_id}/", "Compute", True, None)
    assert node["architecture"] == "x86_64"
    onboard(accounts_reset, admin, "stor9.example", "managed_storage_server")
    assert admin.get(LIST, hostname="stor9.example")["objects"] == []


def test_an_imported_node_is_linked_by_hostname_and_kept_when_the_host_goes(admin, accounts_reset):
    node = admin.post(LIST, {"xname": "x3000c0s1b0n0", "hostname": "cn2.example",
                             "role": "Application", "groups": ["uan"]})
    identity = onboard(accounts_reset, admin, "cn2.example")
    linked = admin.get(node["resource_uri"])
    assert linked["host"] == f"/api/host/{identity.host_id}/"
    assert (linked["role"], linked["groups"], linked["xname"]) == (
        "Application", ["uan"], "x3000c0s1b0n0")
    assert admin.get(LIST)["meta"]["total_count"] == 1
    accounts_reset.db(lambda: Host.update(state="removed").where(
        Host.id == identity.host_id).execute())
    assert admin.get(node["resource_uri"])["host"] is None
    assert admin.get(LIST, host__isnull="true")["meta"]["total_count"] == 1
    assert admin.get(LIST, host=identity.host_id)["objects"] == []
    # the machine registers again: the same node, linked to its new host
    again = onboard(accounts_reset, admin, "cn2.example")
    assert admin.get(node["resource_uri"])["host"] == f"/api/host/{again.host_id}/"
    assert admin.get(LIST)["meta"]["total_count"] == 1
    # removal through the engine (Force Remove) unlinks the node in the same transaction
    command = admin.post("/api/command/", {"message": "force", "jobs": [
        {"class_name": "ForceRemoveHostJob", "args": {"host_id": again.host_id}}]})
    assert wait_for_command(admin, command["resource_uri"])["errored"] is False
    assert accounts_reset.db(lambda: Node.get_by_id(node["id"]).host_id) is None


def register_with_inventory(manager, admin, fqdn, inventory):
    """Register over the agent protocol as a real agent does, inventory included."""
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})["secret"]

    async def register():
        _, csr = make_csr(fqdn)
        creds = grpc.ssl_channel_credentials(manager.ca_pem())
        async with grpc.aio.secure_channel(manager.registration_address, creds) as channel:
            return await agent_pb2_grpc.AgentServiceStub(channel).Register(
                agent_pb2.RegisterRequest(protocol_version=1, token=token, csr_pem=csr, fqdn=fqdn,
                                          nodename=fqdn.split(".")[0], version="test",
                                          inventory=agent_pb2.Inventory(**inventory)), timeout=10)
    return run(register()).host_id


def test_an_imported_node_is_linked_by_mac_and_a_new_one_gets_the_agents_macs(admin,
                                                                            accounts_reset):
    node = admin.post(LIST, {"xname": "x3000c0s1b0n1", "macs": ["02:42:ac:11:00:02"]})
    interfaces = [agent_pb2.NetworkInterface(name="lo", mac_address="00:00:00:00:00:00"),
                  agent_pb2.NetworkInterface(name="eth0", mac_address="02:42:AC:11:00:02")]
    host_id = register_with_inventory(accounts_reset, admin, "cn3.example",
                                      {"architecture": "aarch64", "interfaces": interfaces})
    linked = admin.get(node["resource_uri"])
    assert (linked["host"], linked["hostname"], linked["architecture"]) == (
        f"/api/host/{host_id}/", "cn3.example", "x86_64")  # the inventory's data stays
    infiniband = "80:00:02:08:fe:80:00:00:00:00:00:00:0c:42:a1:03:00:6b:1c:2e"
    interfaces = [agent_pb2.NetworkInterface(name="eth0", mac_address="02:42:ac:11:00:03"),
                  agent_pb2.NetworkInterface(name="ib0", mac_address=infiniband)]
    host_id = register_with_inventory(accounts_reset, admin, "cn4.example",
                                      {"architecture": "aarch64", "interfaces": interfaces})
    new, = admin.get(LIST, host=host_id)["objects"]
    assert (new["hostname"], new["architecture"], new["macs"]) == (
        "cn4.example", "aarch64", ["02:42:ac:11:00:03"])  # ib0's is no Ethernet MAC


def test_a_node_never_fails_a_registration(admin, accounts_reset):
    """The node's hostname is taken by a node another live host holds: no node, a host."""
    other = accounts_reset.db(lambda: make_host("elsewhere.example").id)
    admin.post(LIST, {"hostname": "cn5.example", "host": other})
    identity = onboard(accounts_reset, admin, "cn5.example")
    assert admin.get(f"/api/host/{identity.host_id}/")["fqdn"] == "cn5.example"
    assert admin.get(LIST, host=identity.host_id)["objects"] == []


def make_host(fqdn, state="working"):
    return Host.create(fqdn=fqdn, nodename=fqdn.split(".")[0], state=state, roles=",compute,",
                       server_profile=ServerProfile.get(ServerProfile.name == "compute_node"))
