"""The README's path for a new admin: log in, create a registration token, register an agent
with the printed command, see the host — then the token and host commands around it."""

import datetime
import json

from tests.cli.conftest import register_with
from tests.conftest import ADMIN_PASSWORD


def test_login_token_register_and_host_list(shepherd, accounts_reset, ca_sha256, tmp_path):
    login = shepherd("login", "--url", accounts_reset.url, input=f"y\nadmin\n{ADMIN_PASSWORD}\n")
    assert login.exit_code == 0, login.output
    created = shepherd("token", "create", "--profile", "compute_node")
    assert created.exit_code == 0, created.output
    assert "1 credit, expires in 1h" in created.stderr
    command = created.stdout.strip()
    assert f"--ca-sha256 {ca_sha256} && " in command
    register_with(command, accounts_reset.url, "node001.cluster.example", tmp_path / "agent")
    hosts = json.loads(shepherd("host", "list", "--json").stdout)
    assert [h["fqdn"] for h in hosts] == ["node001.cluster.example"]
    assert hosts[0]["server_profile"]["name"] == "compute_node" and hosts[0]["roles"] == ["compute"]
    table = shepherd("host", "list").stdout.splitlines()
    assert table[0].split() == ["FQDN", "PROFILE", "ROLES", "STATE", "CONNECTED", "LAST", "CONTACT"]
    # its agent has not run yet: the host waits, unconfigured, for its set-up command
    assert table[1].split()[:5] == ["node001.cluster.example", "compute_node", "compute",
                                    "unconfigured", "no"]
    assert shepherd("host", "list", "--role", "storage", "--json").stdout == "[]\n"


def test_token_options_list_and_cancel(shepherd, logged_in):
    created = shepherd("token", "create", "--credits", "3", "--expiry", "2h", "--json")
    token = json.loads(created.stdout)
    assert token["credits"] == 3 and token["profile"] == "/api/server_profile/managed_storage_server/"
    left = datetime.datetime.fromisoformat(token["expiry"]) - datetime.datetime.now(datetime.UTC)
    assert 7100 < left.total_seconds() <= 7200
    listed = shepherd("token", "list", "-o", "wide").stdout
    assert token["secret"] in listed and "managed_storage_server" in listed
    assert shepherd("token", "cancel", str(token["id"])).stdout == f"Cancelled token {token['id']}.\n"
    assert shepherd("token", "list", "--json").stdout == "[]\n"
    assert shepherd("token", "list").stderr.startswith("No usable registration tokens.")
    gone = shepherd("token", "cancel", str(token["id"]))
    assert gone.exit_code == 1 and gone.stderr.startswith("Error: registration_token")


def test_bad_token_options_are_usage_errors(shepherd, logged_in):
    for args in (["--expiry", "soon"], ["--expiry", "0s"], ["--credits", "0"]):
        result = shepherd("token", "create", *args)
        assert result.exit_code == 2, args
    refused = shepherd("token", "create", "--profile", "no_such_profile")
    assert refused.exit_code == 1 and refused.stderr.startswith("Error: profile:")


def test_host_show_and_remove(shepherd, logged_in, tmp_path):
    command = shepherd("token", "create", "--profile", "managed_storage_server").stdout.strip()
    register_with(command, logged_in.url, "oss01.lab.example", tmp_path / "agent")
    shown = shepherd("host", "show", "oss01.lab.example").stdout
    assert "Profile        managed_storage_server" in shown and "Connected      no" in shown
    host = json.loads(shepherd("host", "show", "oss01.lab.example", "--json").stdout)
    assert json.loads(shepherd("host", "show", str(host["id"]), "--json").stdout) == host
    # its agent never ran, so its set-up holds it: only Force Remove takes it away
    declined = shepherd("host", "remove", "oss01.lab.example", "--force", input="n\n")
    assert declined.exit_code == 1 and shepherd("host", "list", "--json").stdout != "[]\n"
    assert "Force remove host oss01.lab.example? The host's agent is cut off" in declined.stderr
    removed = shepherd("host", "remove", "oss01.lab.example", "--force", "--yes")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.splitlines()[-1] == "Removed host oss01.lab.example."
    assert shepherd("host", "list", "--json").stdout == "[]\n"
    missing = shepherd("host", "show", "oss01.lab.example")
    assert missing.exit_code == 1 and missing.stderr == "Error: no host 'oss01.lab.example'\n"
