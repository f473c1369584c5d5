"""Who may do what: each IML group (and anonymous) × each resource × each method.

Allowed means the request got past authorisation (any answer but 401/403); refused means
401 for anonymous and 403 for a signed-in user without the right.
"""

import json

import pytest

from api.client import Client, ShepherdError
from manager.db.inventory import (
    Node,
    PowerControlDevice,
    PowerControlDeviceOutlet,
    PowerControlType,
)
from manager.domain.inventory.power_types import BUILTIN_TYPES
from tests.api.seeding import host_with_finished_work

GROUPS = ("superusers", "filesystem_administrators", "filesystem_users", None)
ADMINS = {"superusers", "filesystem_administrators"}
EVERYONE = set(GROUPS) - {None}

# (method, path template, body, groups allowed); {user} is another user's id, {host}/{token}/
# {alert}/{command}/{job}/{step}/{node}/{ptype}/{device}/{pdu}/{outlet} objects created by the
# fixture ("{host}" also in bodies, the others also inside strings of bodies).
MATRIX = [
    ("GET", "/api/user/", None, EVERYONE),
    ("POST", "/api/user/", {"username": "newbie", "password1": "newbie-pass-1",
                            "password2": "newbie-pass-1"}, {"superusers"}),
    ("PUT", "/api/user/{user}/", {"first_name": "X"}, {"superusers"}),
    ("DELETE", "/api/user/{user}/", None, {"superusers"}),
    ("GET", "/api/group/", None, EVERYONE),
    ("GET", "/api/server_profile/", None, EVERYONE),
    ("GET", "/api/host/", None, EVERYONE),
    ("PUT", "/api/host/{host}/", {"state": "removed"}, ADMINS),
    ("DELETE", "/api/host/{host}/", None, ADMINS),
    ("GET", "/api/registration_token/", None, ADMINS),
    ("POST", "/api/registration_token/", {"profile": "compute_node"}, ADMINS),
    ("PATCH", "/api/registration_token/{token}/", {"cancelled": True}, ADMINS),
    ("GET", "/api/alert/", None, EVERYONE),
    ("PATCH", "/api/alert/{alert}/", {"dismissed": True}, ADMINS),
    ("GET", "/api/audit_log/", None, {"superusers"}),
    ("GET", "/api/command/", None, EVERYONE),
    ("GET", "/api/command/{command}/", None, EVERYONE),
    ("POST", "/api/command/", {"message": "Force remove", "dry_run": True, "jobs": [
        {"class_name": "ForceRemoveHostJob", "args": {"host_id": "{host}"}}]}, ADMINS),
    ("PATCH", "/api/command/{command}/", {"dismissed": True}, ADMINS),
    ("GET", "/api/job/", None, EVERYONE),
    ("GET", "/api/job/{job}/", None, EVERYONE),
    ("PUT", "/api/job/{job}/", {"state": "cancelled"}, ADMINS),
    ("GET", "/api/step/", None, EVERYONE),
    ("GET", "/api/step/{step}/", None, EVERYONE),
    ("POST", "/api/test_host/", {"address": "192.0.2.1:1", "root_pw": "x"}, ADMINS),
    ("GET", "/api/node/", None, EVERYONE),
    ("GET", "/api/node/{node}/", None, EVERYONE),
    ("POST", "/api/node/", {"xname": "x9c0s0b0n0"}, ADMINS),
    ("PATCH", "/api/node/", {"objects": [{"xname": "x9c0s0b0n1"}]}, ADMINS),
    ("PUT", "/api/node/{node}/", {"enabled": False}, ADMINS),
    ("PATCH", "/api/node/{node}/", {"enabled": True}, ADMINS),
    ("DELETE", "/api/node/{node}/", None, ADMINS),
    ("GET", "/api/power_control_type/", None, EVERYONE),
    ("POST", "/api/power_control_type/", {"agent": "fence_apc", "name": "perm type"}, ADMINS),
    ("PUT", "/api/power_control_type/{ptype}/", {"make": "X"}, ADMINS),
    ("DELETE", "/api/power_control_type/{ptype}/", None, ADMINS),
    ("GET", "/api/power_control_device/", None, EVERYONE),
    ("GET", "/api/power_control_device/{device}/", None, EVERYONE),
    ("POST", "/api/power_control_device/", {"device_type": "/api/power_control_type/{ipmi}/",
                                           "address": "192.0.2.9", "password": "x"}, ADMINS),
    ("PUT", "/api/power_control_device/{device}/", {"username": "u"}, ADMINS),
    ("DELETE", "/api/power_control_device/{device}/", None, ADMINS),
    ("GET", "/api/power_control_device_outlet/", None, EVERYONE),
    ("POST", "/api/power_control_device_outlet/", {"device": "/api/power_control_device/{pdu}/",
                                                  "identifier": "7"}, ADMINS),
    ("PUT", "/api/power_control_device_outlet/{outlet}/", {"identifier": "8"}, ADMINS),
    ("PATCH", "/api/power_control_device_outlet/{outlet}/", {"identifier": "9"}, ADMINS),
    ("DELETE", "/api/power_control_device_outlet/{outlet}/", None, ADMINS),
    ("GET", "/metrics", None, EVERYONE),
    # detail reads, and the writes the rows above do not reach
    ("GET", "/api/user/{user}/", None, EVERYONE),
    ("GET", "/api/server_profile/compute_node/", None, EVERYONE),
    ("GET", "/api/host/{host}/", None, EVERYONE),
    ("POST", "/api/host/", {"address": "192.0.2.1:1", "root_pw": "x"}, ADMINS),
    ("GET", "/api/registration_token/{token}/", None, ADMINS),
    ("GET", "/api/alert/{alert}/", None, EVERYONE),
    ("PUT", "/api/alert/{alert}/", {"dismissed": True}, ADMINS),
    ("GET", "/api/power_control_type/{ptype}/", None, EVERYONE),
    ("GET", "/api/power_control_device_outlet/{outlet}/", None, EVERYONE),
]


@pytest.fixture
def world(admin, accounts_reset, make_user):
    """Objects to act on, and one client per group (None: anonymous)."""
    other = admin.post("/api/user/", {"username": "target", "password1": "target-pass-1",
                                      "password2": "target-pass-1"})
    token = admin.post("/api/registration_token/", {"profile": "compute_node"})

    def host_alert_and_work():
        return {**host_with_finished_work("perm"), **inventory()}

    def inventory():
        PowerControlType.delete().where(PowerControlType.name.not_in(BUILTIN_TYPES)).execute()
        ipmi = PowerControlType.get(PowerControlType.name == "IPMI")
        ptype = PowerControlType.create(name="perm spare", agent="fence_apc")
        device = PowerControlDevice.create(device_type=ipmi, name="bmc", address="192.0.2.7",
                                           port=623)
        pdu = PowerControlDevice.create(device_type=PowerControlType.get(
            PowerControlType.name == "APC PDU"), name="pdu", address="192.0.2.8", port=161)
        outlet = PowerControlDeviceOutlet.create(device=pdu, identifier="1")
        node = Node.create(xname="x9c0s0b1n0", xname_key="x9", role="Compute")
        return {"node": node.id, "ptype": ptype.id, "ipmi": ipmi.id, "device": device.id,
                "pdu": pdu.id, "outlet": outlet.id}

    ids = accounts_reset.db(host_alert_and_work)
    clients = {g: make_user(f"u-{g}", g) for g in GROUPS if g}
    clients[None] = Client(accounts_reset.url, verify=accounts_reset.ca_path, retries=1)
    return clients, {**ids, "user": other["id"], "token": token["id"]}


@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX,
                         ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_permission_matrix(world, method, path, body, allowed):
    clients, ids = world
    text = json.dumps(body).replace('"{host}"', str(ids["host"]))
    for name, value in ids.items():
        text = text.replace(f"{{{name}}}", str(value))
    body = json.loads(text)
    # refused groups first: an allowed DELETE would leave the others nothing to be refused on
    for group in sorted(GROUPS, key=lambda g: g in allowed):
        status = answer(clients[group], method, path.format(**ids), body)
        if group in allowed:
            assert status not in (401, 403), f"{group} refused {method} {path}: {status}"
        else:
            assert status == (401 if group is None else 403), \
                f"{group or 'anonymous'} got {status} for {method} {path}"


def answer(client, method, path, body):
    try:
        response = client.request(method, path, json_body=body)
    except ShepherdError as exc:
        return exc.status
    return response.status_code
