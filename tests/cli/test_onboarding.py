"""The README's path for a new admin: log in, create a registration token, register an agent
with the printed command, see the host — then the token and host commands around it."""

import datetime
import json
import shlex
import subprocess

from tests.cli.conftest import AGENT
from tests.conftest import ADMIN_PASSWORD


def register_with(command: str, manager_url: str, fqdn: str, state_dir) -> None:
    """Run the pasted ``register_command`` with the real agent (``shepherd-agent register``).

    The test manager listens on loopback only, so ``--manager`` points at its loopback URL
    rather than at this machine's FQDN; the token and CA fingerprint are used as printed.
    """
    steps = command.split(" && ")
    assert steps[0] == "dnf -y install shepherd-agent"
    assert steps[2] == "systemctl enable --now shepherd-agent"
    args = shlex.split(steps[1])
    assert args[:2] == ["shepherd-agent", "register"]
    args[args.index("--manager") + 1] = manager_url
    result = subprocess.run([AGENT, *args[1:], "--fqdn", fqdn, "--state-dir", str(state_dir)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


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
    assert table[1].split()[:5] == ["node001.cluster.example", "compute_node", "compute", "working", "no"]
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
    declined = shepherd("host", "remove", "oss01.lab.example", input="n\n")
    assert declined.exit_code == 1 and shepherd("host", "list", "--json").stdout != "[]\n"
    removed = shepherd("host", "remove", "oss01.lab.example", "--yes")
    assert removed.stdout == "Removed host oss01.lab.example.\n"
    assert shepherd("host", "list", "--json").stdout == "[]\n"
    missing = shepherd("host", "show", "oss01.lab.example")
    assert missing.exit_code == 1 and missing.stderr == "Error: no host 'oss01.lab.example'\n"
