"""``shepherd login|logout|context``: tokens from /auth/token, the CA pinned on first login,
named contexts, and the environment overrides — against the real manager."""

import datetime
import json
import stat
import tomllib

import pytest

from api.cli import config
from api.client import Client, ShepherdError, ca_fingerprint
from manager.db.accounts import ApiToken
from tests.conftest import ADMIN_PASSWORD


def stored(config_dir):
    return tomllib.loads((config_dir / "config.toml").read_text())


def test_first_login_shows_the_fingerprint_and_pins_the_ca(shepherd, accounts_reset, ca_sha256,
                                                          config_dir):
    result = shepherd("login", "--url", accounts_reset.url, "-u", "admin",
                      input=f"y\n{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert ca_sha256 in result.stderr and "Trust this CA? [y/N]" in result.stderr
    context = stored(config_dir)["contexts"]["default"]
    assert context["url"] == accounts_reset.url and context["token"].startswith("shp_")
    with open(context["ca_file"], "rb") as f:
        assert ca_fingerprint(f.read()) == ca_sha256
    assert stat.S_IMODE((config_dir / "config.toml").stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(config_dir.joinpath(context["ca_file"]).stat().st_mode) == 0o600


def test_the_second_login_does_not_ask_again(shepherd, logged_in):
    result = shepherd("login", "-u", "admin", input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "Trust this CA" not in result.stderr


def test_declining_the_ca_saves_nothing(shepherd, accounts_reset, config_dir):
    result = shepherd("login", "--url", accounts_reset.url, "-u", "admin", input="n\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == "Error: the CA was not trusted; nothing was saved"
    assert not (config_dir / "config.toml").exists()


def test_a_wrong_fingerprint_is_refused(shepherd, accounts_reset, config_dir):
    result = shepherd("login", "--url", accounts_reset.url, "-u", "admin", "--password-stdin",
                      "--ca-sha256", "AB:" * 31 + "AB", input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 1
    assert "refusing to trust it" in result.stderr
    assert not (config_dir / "config.toml").exists()


def test_openssl_style_fingerprints_are_accepted(ca_sha256, shepherd, accounts_reset):
    colons = ":".join(ca_sha256[i:i + 2] for i in range(0, 64, 2)).upper()
    result = shepherd("login", "--url", accounts_reset.url, "-u", "admin", "--password-stdin",
                      "--ca-sha256", colons, input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output


def test_password_stdin_without_a_trusted_ca_is_a_usage_error(shepherd, accounts_reset):
    result = shepherd("login", "--url", accounts_reset.url, "-u", "admin", "--password-stdin",
                      input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 2
    assert "--ca-sha256" in result.stderr


def test_wrong_password(login, config_dir):
    result = login(password="not-the-password")
    assert result.exit_code == 1
    assert result.stderr == "Error: Invalid username or password.\n"
    assert not (config_dir / "config.toml").exists()


def test_revoked_token_says_so_and_how_to_log_in(shepherd, logged_in, config_dir):
    token = stored(config_dir)["contexts"]["default"]["token"]
    Client(logged_in.url, token=token, verify=logged_in.ca_path).logout()
    result = shepherd("host", "list")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "revoked" in result.stderr and "shepherd login" in result.stderr


def test_expired_token_says_so_and_how_to_log_in(shepherd, logged_in):
    logged_in.db(lambda: ApiToken.update(expires_at=datetime.datetime(2000, 1, 1)).execute())
    result = shepherd("--context", "default", "user", "list")
    assert result.exit_code == 1
    assert result.stderr == "Error: Token has expired. Log in again (shepherd --context default login).\n"


def test_logout_revokes_the_token_on_the_server(shepherd, logged_in, config_dir):
    token = stored(config_dir)["contexts"]["default"]["token"]
    result = shepherd("logout")
    assert result.exit_code == 0, result.output
    with pytest.raises(ShepherdError) as err:
        Client(logged_in.url, token=token, verify=logged_in.ca_path).get("/api/host/")
    assert err.value.status == 401
    assert stored(config_dir)["contexts"]["default"]["token"] == ""
    result = shepherd("host", "list")
    assert result.exit_code == 1 and "not logged in" in result.stderr
    assert shepherd("logout").stdout == "Not logged in (context default).\n"


def test_contexts_list_use_and_override(shepherd, login, logged_in):
    assert login("--context", "lab").exit_code == 0
    listed = shepherd("context", "list", "--json")
    assert [(c["name"], c["current"]) for c in json.loads(listed.stdout)] == [
        ("default", False), ("lab", True)]
    assert "token" not in listed.stdout
    assert shepherd("context", "use", "default").exit_code == 0
    table = shepherd("context", "list").stdout.splitlines()
    assert table[1].startswith("*") and "default" in table[1] and "lab" in table[2]
    assert shepherd("logout").exit_code == 0
    assert shepherd("host", "list").exit_code == 1
    assert shepherd("--context", "lab", "host", "list").exit_code == 0
    assert shepherd("host", "list", env={"SHEPHERD_CONTEXT": "lab"}).exit_code == 0


def test_unknown_context_is_a_usage_error(shepherd, logged_in):
    result = shepherd("context", "use", "nowhere")
    assert result.exit_code == 2 and "known: default" in result.stderr
    result = shepherd("--context", "nowhere", "host", "list")
    assert result.exit_code == 1 and "no context named 'nowhere'" in result.stderr


def test_environment_overrides_url_and_token(shepherd, logged_in, make_user, config_dir):
    other = make_user("reader", "filesystem_users")
    env = {"SHEPHERD_TOKEN": other.token}
    assert shepherd("token", "list", env=env).exit_code == 1  # a reader may not see tokens
    assert shepherd("token", "list").exit_code == 0
    (config_dir / "config.toml").unlink()
    env = {"SHEPHERD_URL": logged_in.url, "SHEPHERD_TOKEN": other.token,
           "SHEPHERD_CA_FILE": logged_in.ca_path}
    assert shepherd("host", "list", "--json", env=env).stdout == "[]\n"


def test_ca_file_and_insecure_skip_the_pinning(shepherd, accounts_reset, config_dir):
    result = shepherd("--ca-file", accounts_reset.ca_path, "login", "--url", accounts_reset.url,
                      "-u", "admin", "--password-stdin", input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert stored(config_dir)["contexts"]["default"]["ca_file"] == accounts_reset.ca_path
    result = shepherd("--insecure", "--context", "loose", "login", "--url", accounts_reset.url,
                      "-u", "admin", "--password-stdin", input=f"{ADMIN_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert stored(config_dir)["contexts"]["loose"]["insecure"] is True
    assert shepherd("host", "list", "--json").exit_code == 0


def test_a_contexts_token_and_ca_are_only_for_its_own_url(shepherd, logged_in, config_dir):
    other = logged_in.url.replace("127.0.0.1", "localhost")
    result = shepherd("host", "list", env={"SHEPHERD_URL": other})
    assert result.exit_code == 1
    assert result.stderr == f"Error: not logged in to {other}; run: shepherd login\n"
    token = stored(config_dir)["contexts"]["default"]["token"]
    result = shepherd("host", "list", env={"SHEPHERD_URL": other, "SHEPHERD_TOKEN": token})
    assert result.exit_code == 1  # the system's trust store does not know the manager's CA
    assert "TLS verification" in result.stderr and "--ca-file" in result.stderr


def test_config_file_is_rewritten_with_mode_0600(shepherd, logged_in, config_dir):
    path = config_dir / "config.toml"
    path.chmod(0o644)
    assert shepherd("context", "use", "default").exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.load(path).contexts["default"].username == "admin"
