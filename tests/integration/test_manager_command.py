"""``shepherd-manager`` as an admin runs it: serve (HTTPS with its own CA, or --http),
migrate and create-user, as real processes."""

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
import requests

from api.client import Client, ShepherdError
from manager.pki import fingerprint

MANAGER = [sys.executable, "-m", "manager"]


def run(*args, stdin=None, env=None):
    return subprocess.run([*MANAGER, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False, env={**os.environ, **(env or {})})


@pytest.fixture
def state_dir(tmp_path):
    return str(tmp_path / "state")


def serve(state_dir, *flags):
    proc = subprocess.Popen([*MANAGER, "serve", "--state-dir", state_dir, "--port", "0", "--agent-port", "0", "--registration-port", "0",
                             "--address", "127.0.0.1", *flags],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    for line in proc.stderr:
        match = re.search(r"REST API on (\S+)/api/", line)
        if match:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError("serve did not print where it listens")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_create_user_then_login_over_https(state_dir):
    result = run("create-user", "root1", "--password-stdin", "--superuser", "--state-dir", state_dir,
                 stdin="root1-password\n")
    assert result.returncode == 0, result.stderr
    assert "created user root1" in result.stdout
    proc, url = serve(state_dir)
    try:
        assert url.startswith("https://")
        ca_pem = Client(url).fetch_ca()
        ca_file = os.path.join(state_dir, "pinned-ca.crt")
        with open(ca_file, "wb") as f:
            f.write(ca_pem)
        with open(os.path.join(state_dir, "tls", "ca.crt"), "rb") as f:
            assert fingerprint(ca_pem) == fingerprint(f.read())
        client = Client(url, verify=ca_file)
        client.login("root1", "root1-password")
        me = client.get("/api/user/")["objects"][0]
        assert me["username"] == "root1" and me["is_superuser"] is True
        with pytest.raises(ShepherdError, match="TLS verification"):
            Client(url, verify=True).get("/healthz")
    finally:
        stop(proc)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_is_1_2_or_newer(state_dir):
    proc, url = serve(state_dir)
    try:
        ctx = ssl.create_default_context(cafile=os.path.join(state_dir, "tls", "ca.crt"))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        host, port = url.removeprefix("https://").split(":")
        with pytest.raises(ssl.SSLError), socket.create_connection((host, int(port))) as sock:
            ctx.wrap_socket(sock, server_hostname="localhost")
    finally:
        stop(proc)


def test_http_mode_serves_plain_http(state_dir):
    proc, url = serve(state_dir, "--http")
    try:
        assert url.startswith("http://")
        r = requests.get(url + "/healthz", timeout=10)
        assert r.json() == {"status": "ok"}
    finally:
        stop(proc)


def test_create_user_refusals(state_dir):
    both = run("create-user", "x1", "--password", "pw-pw-pw-pw", "--password-stdin", "--state-dir", state_dir)
    assert both.returncode == 2 and "exactly one" in both.stderr
    short = run("create-user", "x2", "--password", "short", "--state-dir", state_dir)
    assert short.returncode == 1 and "at least 8" in short.stderr
    run("create-user", "x3", "--password", "long-enough", "--state-dir", state_dir)
    dup = run("create-user", "x3", "--password", "long-enough", "--state-dir", state_dir)
    assert dup.returncode == 1 and "already exists" in dup.stderr


def test_migrate_is_idempotent(state_dir):
    first = run("migrate", "--state-dir", state_dir)
    assert first.returncode == 0 and "applied: 0001_accounts" in first.stdout
    second = run("migrate", "--state-dir", state_dir)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_migrate_on_postgresql(pg_server):
    url = pg_server.fresh_database("migrate_cli")
    assert "applied" in run("migrate", "--database-url", url).stdout
    assert "up to date" in run("migrate", "--database-url", url).stdout


def test_bad_configuration_is_a_usage_error(state_dir, tmp_path):
    bad = run("serve", "--state-dir", state_dir, env={"SHEPHERD_PORT": "http"})
    assert bad.returncode == 2 and "SHEPHERD_PORT" in bad.stderr
    cfg = tmp_path / "m.toml"
    cfg.write_text('[manager]\nno_such_setting = 1\n')
    bad = run("serve", "--config", str(cfg), "--state-dir", state_dir)
    assert bad.returncode == 2 and "no_such_setting" in bad.stderr


def test_state_dir_and_keys_are_private(state_dir):
    proc, _ = serve(state_dir)
    stop(proc)
    assert os.stat(state_dir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(state_dir, "tls", "ca.key")).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(state_dir, "tls", "server.key")).st_mode & 0o777 == 0o600


def test_first_start_creates_admin_with_a_private_password_file(state_dir):
    proc, url = serve(state_dir)
    try:
        path = os.path.join(state_dir, "initial-admin-password")
        assert os.stat(path).st_mode & 0o777 == 0o600
        with open(path) as f:
            password = f.read().strip()
        client = Client(url, verify=os.path.join(state_dir, "tls", "ca.crt"))
        client.login("admin", password)
        assert client.get("/api/user/")["objects"][0]["is_superuser"] is True
    finally:
        stop(proc)
    proc, _ = serve(state_dir)  # a second start leaves the existing admin alone
    stop(proc)
    with open(path) as f:
        assert f.read().strip() == password


def test_simulated_agents_show_up_as_connected_hosts(state_dir):
    proc, url = serve(state_dir, "--simulated-agents", "3")
    try:
        with open(os.path.join(state_dir, "initial-admin-password")) as f:
            password = f.read().strip()
        client = Client(url, verify=os.path.join(state_dir, "tls", "ca.crt"))
        client.login("admin", password)
        deadline = time.monotonic() + 30
        hosts = []
        while time.monotonic() < deadline:
            hosts = [h for h in client.get("/api/host/")["objects"] if h["connected"]]
            if len(hosts) == 3:
                break
            time.sleep(0.2)
        assert sorted(h["fqdn"] for h in hosts) == [f"demo0000{i}.sim.shepherd" for i in range(3)]
        assert {h["server_profile"]["name"] for h in hosts} == {"compute_node"}
    finally:
        stop(proc)
