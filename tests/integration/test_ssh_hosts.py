"""/api/test_host/ against a real sshd in a network namespace."""

import subprocess

import pytest

from api.client import Client, ShepherdError
from tests.manager_process import RunningManager
from tests.netns import NetnsHost
from tests.sshd import Sshd


@pytest.fixture
def ssh_host(tmp_path):
    with NetnsHost() as host, Sshd(host, str(tmp_path / "sshd")) as sshd:
        yield host, sshd


@pytest.fixture
def lan_manager(tmp_path, ssh_host):
    """A manager reachable from the test host's namespace."""
    host, _ = ssh_host
    running = RunningManager(str(tmp_path / "state"), f"sqlite:///{tmp_path}/m.db",
                             address="0.0.0.0", public_host=host.gateway,
                             server_names=host.gateway).start()
    yield running
    running.stop()


@pytest.fixture
def admin(lan_manager, tmp_path):
    with open(f"{tmp_path}/state/initial-admin-password") as f:
        password = f.read().strip()
    client = Client(lan_manager.url, verify=lan_manager.ca_path)
    client.login("admin", password)
    return client


def test_reachable_with_key(admin, ssh_host):
    host, sshd = ssh_host
    doc = admin.post("/api/test_host/", {"address": f"root@{host.address}",
                                         "private_key": sshd.private_key(),
                                         "server_profile": "compute_node"})
    checks = {c["name"]: c["value"] for c in doc["status"]}
    assert checks["reachable"] and checks["auth"] and checks["python3"]
    assert doc["valid"] is True


def test_wrong_key_fails_auth(admin, ssh_host, tmp_path):
    host, _ = ssh_host
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    doc = admin.post("/api/test_host/", {"address": host.address,
                                         "private_key": stranger.read_text()})
    checks = {c["name"]: c for c in doc["status"]}
    assert checks["reachable"]["value"] is True
    assert checks["auth"]["value"] is False and "authentication" in checks["auth"]["detail"]
    assert doc["valid"] is False


def test_unreachable_address(admin, ssh_host):
    host, _ = ssh_host
    unused = host.address.rsplit(".", 1)[0] + ".3"
    doc = admin.post("/api/test_host/", {"address": f"{unused}:22", "root_pw": "x"})
    assert {c["name"]: c["value"] for c in doc["status"]}["reachable"] is False


@pytest.mark.parametrize("body,field", [
    ({"root_pw": "x"}, "address"),
    ({"address": "h"}, "root_pw"),
    ({"address": "h", "auth_type": "private_key_choice", "root_pw": "x"}, "private_key"),
    ({"address": "a b c", "root_pw": "x"}, "address"),
    ({"address": "h:99999", "root_pw": "x"}, "address"),
    ({"address": "h", "root_pw": 5}, "root_pw"),
])
def test_bad_requests(admin, body, field):
    with pytest.raises(ShepherdError) as err:
        admin.post("/api/test_host/", body)
    assert err.value.status == 400 and field in err.value.body
