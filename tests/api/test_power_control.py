"""/api/power_control_type/, /api/power_control_device/ and /api/power_control_device_outlet/
(iml-api.md): fields, filters, orderings and methods; passwords write-only and encrypted at
rest; max_outlets; and what the engine gets from ``outlet_targets`` and ``record_power``."""

import os
import stat
import time

import pytest

from manager import secrets
from manager.db.inventory import PowerControlDevice, PowerControlType
from manager.domain.inventory import power
from manager.domain.inventory.power_types import BUILTIN_TYPES
from tests.api.test_registration import error

TYPES, DEVICES, OUTLETS = ("/api/power_control_type/", "/api/power_control_device/",
                           "/api/power_control_device_outlet/")
TYPE_FIELDS = {"agent", "default_options", "default_port", "driver", "id", "make",
               "max_outlets", "model", "monitor_template", "name", "outlet_list_template",
               "outlet_query_template", "powercycle_template", "poweroff_template",
               "poweron_template", "resource_uri"}
DEVICE_FIELDS = {"address", "device_type", "id", "name", "options", "outlets", "port",
                 "resource_uri", "username"}
OUTLET_FIELDS = {"device", "has_power", "host", "id", "identifier", "node",
                 "power_checked_at", "resource_uri"}
SECRET = "Bmc-Pa55word!"


@pytest.fixture
def types(admin, accounts_reset):
    """The built-in types by name; types a test adds are deleted (they outlive accounts)."""
    def builtin_only():
        PowerControlType.delete().where(PowerControlType.name.not_in(BUILTIN_TYPES)).execute()
    accounts_reset.db(builtin_only)
    yield {t["name"]: t for t in admin.get(TYPES)["objects"]}
    accounts_reset.db(lambda: PowerControlDevice.delete().execute())
    accounts_reset.db(builtin_only)


def make_device(admin, types, type_name="IPMI", address="10.1.0.1", **extra):
    return admin.post(DEVICES, {"device_type": types[type_name]["resource_uri"],
                                "address": address, "username": "root", "password": SECRET,
                                **extra})


def raw_password(manager, device_id):
    return manager.db(lambda: PowerControlDevice.get_by_id(device_id).password)


# --- types ----------------------------------------------------------------------------------

def test_built_in_types(admin, types):
    assert list(types) == ["IPMI", "Redfish", "APC PDU"]  # in the order the migration made them
    ipmi, redfish, apc = types["IPMI"], types["Redfish"], types["APC PDU"]
    assert set(ipmi) == TYPE_FIELDS
    assert (ipmi["agent"], ipmi["default_port"], ipmi["default_options"], ipmi["max_outlets"],
            ipmi["driver"]) == ("fence_ipmilan", 623, "lanplus=1", 1, "ipmi")
    assert (redfish["agent"], redfish["default_port"], redfish["default_options"],
            redfish["driver"]) == ("fence_redfish", 443, "ssl_insecure=1", "redfish")
    assert (apc["agent"], apc["default_port"], apc["max_outlets"], apc["driver"]) == (
        "fence_apc_snmp", 161, 0, "fence")
    assert ipmi["poweron_template"] == ("{agent} --ip={address} --ipport={port} "
                                        "--username={username} {options} --action=on")
    assert apc["outlet_query_template"] == ("{agent} --ip={address} --ipport={port} "
                                            "--username={username} --plug={identifier} "
                                            "{options} --action=status")
    assert ipmi["outlet_list_template"] is None and "--action=list" in apc["outlet_list_template"]
    for t in types.values():
        for name in ("monitor_template", "outlet_query_template", "powercycle_template",
                     "poweroff_template", "poweron_template"):
            assert t[name].startswith("{agent} ") and "pass" not in t[name]
    assert admin.get(ipmi["resource_uri"]) == ipmi


def test_type_schema(admin):
    schema = admin.get(f"{TYPES}schema/")
    assert set(schema["fields"]) == TYPE_FIELDS
    assert schema["filtering"] == {"make": ["exact"], "name": ["exact"]}
    assert schema["ordering"] == ["name", "make", "model"]
    assert schema["allowed_list_http_methods"] == ["get", "post"]
    assert schema["allowed_detail_http_methods"] == ["get", "put", "delete"]
    assert {n for n, f in schema["fields"].items() if f["readonly"]} == {"driver", "id",
                                                                         "resource_uri"}


def test_type_create_update_delete(admin, types):
    made = admin.post(TYPES, {"agent": "fence_raritan", "make": "Raritan", "model": "PX3",
                              "max_outlets": 24, "default_options": "snmp_version=2c"})
    assert (made["name"], made["default_port"], made["driver"]) == (
        "Raritan PX3 (fence_raritan)", 23, "fence")
    assert made["poweroff_template"] == ("{agent} --ip={address} --ipport={port} "
                                         "--username={username} --plug={identifier} {options} "
                                         "--action=off")
    changed = admin.put(made["resource_uri"], {"name": "Raritan", "default_port": 161,
                                               "outlet_list_template": None, "driver": "x"})
    assert (changed["name"], changed["default_port"], changed["outlet_list_template"],
            changed["driver"]) == ("Raritan", 161, None, "fence")
    admin.delete(made["resource_uri"])
    assert error(admin.get, made["resource_uri"]).status == 404


@pytest.mark.parametrize("body,field,message", [
    ({}, "agent", "This field is required."),
    ({"agent": "apc"}, "agent", "Not allowed: a fence agent's name"),
    ({"agent": "fence_x; rm -rf /"}, "agent", "Not allowed"),
    ({"agent": "fence_x", "max_outlets": -1}, "max_outlets", "from 0 to 100000"),
    ({"agent": "fence_x", "default_port": 0}, "default_port", "from 1 to 65535"),
    ({"agent": "fence_x", "default_port": "623"}, "default_port", "Must be an integer"),
    ({"agent": "fence_x", "poweron_template": "{agent} -p {password} -o on"},
     "poweron_template", "The password is never part of a command line"),
    ({"agent": "fence_x", "poweron_template": "%(agent)s -p %(password)s"},
     "poweron_template", "The password is never part of a command line"),
    ({"agent": "fence_x", "poweron_template": "{agent} --plug={outlet}"},
     "poweron_template", "Unknown placeholder {outlet}"),
    ({"agent": "fence_x", "poweron_template": "{agent"}, "poweron_template",
     "Not a command template"),
    ({"agent": "fence_x", "default_options": "ssh_path=/bin/sh"}, "default_options",
     "Option 'ssh_path' is not allowed"),
    ({"agent": "fence_x", "default_options": "--password=x"}, "default_options", "not allowed"),
    ({"agent": "fence_x", "default_options": "a=$(reboot)"}, "default_options", "Not allowed"),
    ({"agent": "fence_x", "name": "IPMI"}, "name", "A power control type named 'IPMI' exists."),
    ({"agent": "fence_x", "colour": "red"}, "colour", "Unknown field."),
])
def test_type_refusals(admin, types, body, field, message):
    err = error(admin.post, TYPES, body)
    assert err.status == 400 and message in err.body[field], err.body


@pytest.mark.parametrize("params,expected", [
    ({"make": "APC"}, ["APC PDU"]),
    ({"name": "Redfish"}, ["Redfish"]),
    ({"order_by": "name"}, ["APC PDU", "IPMI", "Redfish"]),
    ({"order_by": "-name"}, ["Redfish", "IPMI", "APC PDU"]),
    ({"order_by": "make"}, ["APC PDU", "Redfish", "IPMI"]),
    ({"order_by": "-model"}, ["APC PDU", "Redfish", "IPMI"]),
])
def test_type_filters_and_ordering(admin, types, params, expected):
    assert [t["name"] for t in admin.get(TYPES, **params)["objects"]] == expected


def test_a_type_in_use_cannot_be_deleted_nor_shrunk_below_its_devices(admin, types):
    made = admin.post(TYPES, {"agent": "fence_apc", "max_outlets": 0, "name": "PDU8"})
    device = make_device(admin, {"PDU8": made}, "PDU8", outlets=[
        {"identifier": str(i)} for i in range(1, 4)])
    err = error(admin.put, made["resource_uri"], {"max_outlets": 2})
    assert err.status == 400 and err.body == {
        "max_outlets": "A device of this type has 3 outlets; remove some first."}
    admin.put(made["resource_uri"], {"max_outlets": 8})
    err = error(admin.delete, made["resource_uri"])
    assert err.status == 409 and "used by 1 device" in err.body["__all__"]
    admin.delete(device["resource_uri"])
    admin.delete(made["resource_uri"])


# --- devices --------------------------------------------------------------------------------

def test_device_fields_defaults_and_nesting(admin, types):
    device = make_device(admin, types)
    assert set(device) == DEVICE_FIELDS
    assert (device["name"], device["port"], device["options"], device["username"],
            device["outlets"]) == ("10.1.0.1", 623, None, "root", [])
    assert device["device_type"] == types["IPMI"]
    assert admin.get(device["resource_uri"]) == device
    named = admin.post(DEVICES, {"device_type": types["Redfish"]["id"], "address": "bmc2.example",
                                 "port": 8443, "name": "rack3 BMC", "options": "ssl_insecure=0"})
    assert (named["name"], named["port"], named["options"], named["username"]) == (
        "rack3 BMC", 8443, "ssl_insecure=0", "")
    nested = admin.post(DEVICES, {"device_type": {"id": types["APC PDU"]["id"]},
                                  "address": "pdu1.example"})
    assert nested["device_type"]["name"] == "APC PDU"


def test_device_schema(admin):
    schema = admin.get(f"{DEVICES}schema/")
    assert set(schema["fields"]) == DEVICE_FIELDS | {"password"}
    assert schema["filtering"] == {"name": ["exact"]} and schema["ordering"] == ["name"]
    assert schema["allowed_list_http_methods"] == ["get", "post"]
    assert schema["allowed_detail_http_methods"] == ["get", "put", "delete"]


def test_the_password_is_write_only_and_encrypted_at_rest(admin, types, accounts_reset):
    device = make_device(admin, types)
    listing = admin.request("GET", DEVICES).text
    detail = admin.request("GET", device["resource_uri"]).text
    assert "password" not in device and SECRET not in listing and SECRET not in detail
    stored = raw_password(accounts_reset, device["id"])
    assert stored and SECRET not in stored and stored.startswith("gAAAA")  # a Fernet token
    box = accounts_reset.manager.ctx.secrets
    assert box.decrypt(stored) == SECRET
    # a PUT without the password keeps it; with one, replaces it; null clears it
    admin.put(device["resource_uri"], {"username": "admin"})
    assert raw_password(accounts_reset, device["id"]) == stored
    admin.put(device["resource_uri"], {"password": "0ther-Secret"})
    assert box.decrypt(raw_password(accounts_reset, device["id"])) == "0ther-Secret"
    admin.put(device["resource_uri"], {"password": None})
    assert raw_password(accounts_reset, device["id"]) == ""
    # nor does the audit log keep it
    records = admin.get("/api/audit_log/", object_type="power_control_device", limit=0)
    assert len(records["objects"]) == 4
    assert all(SECRET not in r["summary"] and "0ther-Secret" not in r["summary"]
               for r in records["objects"])
    assert '"password": "********"' in records["objects"][0]["summary"]
    # a refused request is audited too, its password masked as well
    error(admin.post, DEVICES, {"device_type": 999999, "address": "10.9.9.9", "password": SECRET})
    refused = wait_for(lambda: admin.get("/api/audit_log/", object_type="power_control_device",
                                         outcome="refused")["objects"])
    assert refused[0]["status"] == 400 and SECRET not in refused[0]["summary"]
    assert '"password": "********"' in refused[0]["summary"]


def wait_for(fetch, timeout=5):
    deadline = time.monotonic() + timeout
    while not (value := fetch()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_the_key_file_is_private_and_made_once(accounts_reset, tmp_path):
    path = os.path.join(accounts_reset.config.state_dir, secrets.KEY_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    box = secrets.load(str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / secrets.KEY_FILE).st_mode) == 0o600
    token = box.encrypt("s3cret")
    assert secrets.load(str(tmp_path)).decrypt(token) == "s3cret"
    assert box.encrypt("") == "" and box.decrypt("") == ""
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(secrets.SecretUnreadable):
        secrets.load(str(other)).decrypt(token)


@pytest.mark.parametrize("body,field,message", [
    ({"address": "10.0.0.1"}, "device_type", "This field is required."),
    ({"device_type": "{ipmi}"}, "address", "This field is required."),
    ({"device_type": "/api/power_control_type/999999/", "address": "10.0.0.1"},
     "device_type", "No power control type 999999."),
    ({"device_type": "/api/host/1/", "address": "10.0.0.1"}, "device_type",
     "Must be a /api/power_control_type/ URI or id."),
    ({"device_type": "{ipmi}", "address": "10.0.0.1; reboot"}, "address", "Not allowed"),
    ({"device_type": "{ipmi}", "address": ""}, "address", "may not be blank"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "port": 70000}, "port", "1 to 65535"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "password": "a\nb"}, "password",
     "Line breaks"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "password": "x" * 257}, "password",
     "At most 256"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "username": "u" * 65}, "username",
     "At most 64"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "options": "plug=3"}, "options",
     "Option 'plug' is not allowed"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "outlets": "1"}, "outlets",
     "Must be a list of outlets to create"),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "outlets": [{"identifier": "1"},
                                                                  {"identifier": "2"}]},
     "outlets", "outlets[1].device: Device 10.0.0.1 has its type's maximum of 1 outlet(s)."),
    ({"device_type": "{ipmi}", "address": "10.0.0.1", "outlets": [{"socket": "1"}]},
     "outlets[0].socket", "Unknown field."),
])
def test_device_refusals(admin, types, body, field, message):
    body = {k: types["IPMI"]["resource_uri"] if v == "{ipmi}" else v for k, v in body.items()}
    err = error(admin.post, DEVICES, body)
    assert err.status == 400 and message in err.body[field], err.body
    assert admin.get(DEVICES)["objects"] == []


def test_device_address_and_port_are_unique_and_name_filters_and_orders(admin, types):
    make_device(admin, types, name="b")
    err = error(make_device, admin, types)
    assert err.status == 400 and err.body == {"address": "A device at 10.1.0.1 port 623 exists."}
    make_device(admin, types, port=624, name="a")
    make_device(admin, types, "Redfish", "10.1.0.2", name="c")
    assert [d["name"] for d in admin.get(DEVICES, order_by="name")["objects"]] == ["a", "b", "c"]
    assert [d["name"] for d in admin.get(DEVICES, order_by="-name")["objects"]] == ["c", "b", "a"]
    assert [d["port"] for d in admin.get(DEVICES, name="a")["objects"]] == [624]
    assert error(admin.get, DEVICES, address="10.1.0.1").status == 400


def test_device_update_and_delete(admin, types, accounts_reset):
    node = admin.post("/api/node/", {"xname": "x1c0s0b0n0"})
    device = make_device(admin, types, "APC PDU", outlets=[
        {"identifier": "1", "node": node["resource_uri"]}, {"identifier": "2"}])
    assert [o["identifier"] for o in device["outlets"]] == ["1", "2"]
    assert device["outlets"][0]["node"] == node["resource_uri"]
    changed = admin.put(device["resource_uri"], {**device, "name": "", "options": "community=x",
                                                 "outlets": []})
    assert (changed["name"], changed["options"]) == ("10.1.0.1", "community=x")
    assert len(changed["outlets"]) == 2  # outlets change through their own resource
    err = error(admin.put, device["resource_uri"], {"device_type": types["IPMI"]["id"]})
    assert err.body == {"device_type": "That type allows 1 outlet(s); this device has 2."}
    admin.delete(device["resource_uri"])
    assert admin.get(OUTLETS)["objects"] == []
    assert admin.get(node["resource_uri"])["outlet"] is None  # the node stays
    assert error(admin.delete, device["resource_uri"]).status == 404


# --- outlets --------------------------------------------------------------------------------

def test_outlet_fields_and_schema(admin, types):
    device = make_device(admin, types, "APC PDU")
    outlet = admin.post(OUTLETS, {"device": device["resource_uri"], "identifier": "7"})
    assert set(outlet) == OUTLET_FIELDS
    assert outlet == {"device": device["resource_uri"], "has_power": "Unknown", "host": None,
                      "id": outlet["id"], "identifier": "7", "node": None,
                      "power_checked_at": None, "resource_uri": f"{OUTLETS}{outlet['id']}/"}
    assert admin.get(outlet["resource_uri"]) == outlet
    assert admin.get(device["resource_uri"])["outlets"] == [outlet]
    schema = admin.get(f"{OUTLETS}schema/")
    assert set(schema["fields"]) == OUTLET_FIELDS
    assert schema["filtering"] == {} and schema["ordering"] == []
    assert schema["allowed_list_http_methods"] == ["get", "post"]
    assert schema["allowed_detail_http_methods"] == ["get", "put", "delete", "patch"]
    assert {n for n, f in schema["fields"].items() if not f["readonly"]} == {
        "device", "host", "identifier", "node"}
    assert error(admin.get, OUTLETS, identifier="7").status == 400
    assert error(admin.get, OUTLETS, order_by="identifier").status == 400


def test_outlets_link_hosts_and_nodes(admin, types, accounts_reset):
    from tests.api.test_nodes import make_host
    host_id = accounts_reset.db(lambda: make_host("pdu-fed.example").id)
    first = admin.post("/api/node/", {"xname": "x1c0s0b0n0"})
    second = admin.post("/api/node/", {"xname": "x1c0s0b0n1"})
    device = make_device(admin, types, "APC PDU")
    outlet = admin.post(OUTLETS, {"device": device["id"], "identifier": "1",
                                  "host": f"/api/host/{host_id}/", "node": first["id"]})
    assert (outlet["host"], outlet["node"]) == (f"/api/host/{host_id}/", first["resource_uri"])
    assert admin.get(first["resource_uri"])["outlet"] == outlet["resource_uri"]
    assert admin.get("/api/node/", outlet=outlet["id"])["objects"][0]["id"] == first["id"]
    moved = admin.patch(outlet["resource_uri"], {"node": second["resource_uri"]})
    assert moved["node"] == second["resource_uri"] and moved["host"] == f"/api/host/{host_id}/"
    assert admin.get(first["resource_uri"])["outlet"] is None
    assert admin.patch(outlet["resource_uri"], {"node": None, "host": None})["node"] is None
    assert admin.get(second["resource_uri"])["outlet"] is None
    # a node's outlet may be set from the node too
    admin.patch(first["resource_uri"], {"outlet": outlet["resource_uri"]})
    assert admin.get(outlet["resource_uri"])["node"] == first["resource_uri"]
    err = error(admin.patch, second["resource_uri"], {"outlet": outlet["id"]})
    assert err.body == {"outlet": f"{outlet['id']} belongs to node {first['id']}."}


def test_max_outlets_and_identifiers(admin, types):
    bmc = make_device(admin, types)
    admin.post(OUTLETS, {"device": bmc["resource_uri"]})
    err = error(admin.post, OUTLETS, {"device": bmc["resource_uri"], "identifier": "2"})
    assert err.status == 400 and err.body == {
        "device": "Device 10.1.0.1 has its type's maximum of 1 outlet(s)."}
    pdu = make_device(admin, types, "APC PDU", "10.1.0.9")
    outlets = [admin.post(OUTLETS, {"device": pdu["id"], "identifier": str(i)})
               for i in range(1, 31)]
    err = error(admin.post, OUTLETS, {"device": pdu["id"], "identifier": "30"})
    assert err.body == {"identifier": "The device already has an outlet '30'."}
    err = error(admin.put, outlets[0]["resource_uri"], {"device": bmc["id"]})
    assert err.body == {"device": "Device 10.1.0.1 has its type's maximum of 1 outlet(s)."}
    assert admin.put(outlets[0]["resource_uri"], {"identifier": "31"})["identifier"] == "31"


@pytest.mark.parametrize("body,field,message", [
    ({}, "device", "This field is required."),
    ({"device": 999999}, "device", "No power control device 999999."),
    ({"device": "{pdu}", "identifier": "a b"}, "identifier", "Not allowed"),
    ({"device": "{pdu}", "host": 999999}, "host", "No host 999999."),
    ({"device": "{pdu}", "node": "/api/node/999999/"}, "node", "No node 999999."),
    ({"device": "{pdu}", "node": "/api/host/1/"}, "node", "Must be a /api/node/ URI or id."),
    ({"device": "{pdu}", "colour": "red"}, "colour", "Unknown field."),
])
def test_outlet_refusals(admin, types, body, field, message):
    pdu = make_device(admin, types, "APC PDU")
    body = {k: pdu["resource_uri"] if v == "{pdu}" else v for k, v in body.items()}
    err = error(admin.post, OUTLETS, body)
    assert err.status == 400 and message in err.body[field], err.body
    assert admin.get(OUTLETS)["objects"] == []


def test_has_power_is_read_only_and_recorded_by_the_manager(admin, types, accounts_reset):
    pdu = make_device(admin, types, "APC PDU")
    a, b, c = (admin.post(OUTLETS, {"device": pdu["id"], "identifier": str(i)})
               for i in range(1, 4))
    err = error(admin.put, a["resource_uri"], {"has_power": "On"})
    assert err.status == 400 and "Read-only" in err.body["has_power"]
    assert admin.put(a["resource_uri"], {**a, "identifier": "1a"})["has_power"] == "Unknown"
    assert accounts_reset.db(power.record_power, {a["id"]: "On", b["id"]: "Off",
                                                  c["id"]: "Unknown", 999999: "On"}) == 3
    states = {o["id"]: o for o in admin.get(OUTLETS)["objects"]}
    assert [states[o["id"]]["has_power"] for o in (a, b, c)] == ["On", "Off", "Unknown"]
    assert all(states[o["id"]]["power_checked_at"] for o in (a, b, c))
    with pytest.raises(ValueError, match="not a power state: 'on'"):
        accounts_reset.db(power.record_power, {a["id"]: "on"})
    assert admin.get(a["resource_uri"])["has_power"] == "On"


def test_outlet_delete(admin, types):
    pdu = make_device(admin, types, "APC PDU")
    outlet = admin.post(OUTLETS, {"device": pdu["id"], "identifier": "1"})
    node = admin.post("/api/node/", {"xname": "x1c0s0b0n0", "outlet": outlet["id"]})
    admin.delete(outlet["resource_uri"])
    assert error(admin.get, outlet["resource_uri"]).status == 404
    assert admin.get(node["resource_uri"])["outlet"] is None
    assert admin.get(pdu["resource_uri"])["outlets"] == []


# --- for the engine ------------------------------------------------------------------------

def test_outlet_targets_are_the_agents_contract(admin, types, accounts_reset):
    custom = admin.post(TYPES, {"agent": "fence_raritan", "default_options": "snmp_version=3"})
    bmc = make_device(admin, types, "IPMI", "10.1.0.1", outlets=[{}])
    redfish = make_device(admin, types, "Redfish", "10.1.0.2", options="",
                          outlets=[{"identifier": "System.Embedded.1"}])
    pdu = make_device(admin, {"custom": custom}, "custom", "pdu.example", password=None,
                      username="", outlets=[{"identifier": "4"}])
    ids = [pdu["outlets"][0]["id"], bmc["outlets"][0]["id"], 999999, redfish["outlets"][0]["id"]]
    targets = accounts_reset.db(power.outlet_targets, ids, accounts_reset.manager.ctx.secrets)
    assert targets == [
        {"id": ids[0], "driver": "fence", "address": "pdu.example", "port": 23, "username": "",
         "password": "", "identifier": "4", "options": "snmp_version=3",
         "fence_agent": "fence_raritan"},
        {"id": ids[1], "driver": "ipmi", "address": "10.1.0.1", "port": 623, "username": "root",
         "password": SECRET, "identifier": "", "options": "lanplus=1",
         "fence_agent": "fence_ipmilan"},
        {"id": ids[3], "driver": "redfish", "address": "10.1.0.2", "port": 443,
         "username": "root", "password": SECRET, "identifier": "System.Embedded.1",
         "options": "", "fence_agent": "fence_redfish"}]
    # the manager's installed box is the default
    assert accounts_reset.db(power.outlet_targets, ids[1:2]) == targets[1:2]
    assert accounts_reset.db(power.outlet_targets, []) == []


def test_outlet_targets_refuse_a_password_another_key_encrypted(admin, types, accounts_reset,
                                                                 tmp_path):
    bmc = make_device(admin, types, outlets=[{}])
    with pytest.raises(secrets.SecretUnreadable, match="enter the password again"):
        accounts_reset.db(power.outlet_targets, [bmc["outlets"][0]["id"]],
                          secrets.load(str(tmp_path)))
