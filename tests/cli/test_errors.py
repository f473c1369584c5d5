"""Exit codes and error lines: 1 with the server's one-line message for API and connection
errors, 2 for usage errors, never a Python traceback."""

import socket

import pytest

from api.cli.credentials import Options
from api.cli.main import api_failure
from api.client import ShepherdError, error_message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_is_one_line_and_exit_1(shepherd_process):
    url = f"https://127.0.0.1:{closed_port()}"
    result = shepherd_process("host", "list", env={"SHEPHERD_URL": url, "SHEPHERD_TOKEN": "shp_x"})
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"Error: cannot connect to {url}: Connection refused\n"


def test_unreachable_login_url(shepherd_process):
    url = f"https://127.0.0.1:{closed_port()}"
    result = shepherd_process("login", "--url", url, "-u", "admin", "--yes", "--password-stdin",
                              input="whatever\n")
    assert result.returncode == 1
    assert result.stderr == f"Error: cannot connect to {url}: Connection refused\n"


def test_unknown_host_name(shepherd_process):
    env = {"SHEPHERD_URL": "https://no-such-host.invalid:8443", "SHEPHERD_TOKEN": "shp_x"}
    result = shepherd_process("alert", "list", env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("Error: cannot connect to https://no-such-host.invalid:8443: ")


def test_plain_http_to_the_https_port(shepherd, logged_in):
    env = {"SHEPHERD_URL": logged_in.url.replace("https", "http"), "SHEPHERD_TOKEN": "shp_x"}
    result = shepherd("host", "list", env=env)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1


def test_not_logged_in_says_how(shepherd):
    result = shepherd("host", "list")
    assert result.exit_code == 1
    assert result.stderr == "Error: not logged in; run: shepherd login --url https://MANAGER:8443\n"


@pytest.mark.parametrize("args", [
    ["host", "list", "--bogus"], ["nosuchcommand"], ["host", "list", "-o", "yaml"],
    ["token", "cancel"], ["token", "cancel", "seven"], ["completion", "tcsh"],
    ["--ca-file", "/does/not/exist", "host", "list"]])
def test_usage_errors_exit_2(shepherd, args):
    assert shepherd(*args).exit_code == 2


def test_a_broken_config_file_is_one_line(shepherd, config_dir):
    config_dir.mkdir(parents=True)
    (config_dir / "config.toml").write_text("current_context = [\n")
    result = shepherd("host", "list")
    assert result.exit_code == 1 and result.stderr.startswith("Error: cannot read ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(("body", "message"), [
    ({"username": "A user with that username already exists."},
     "username: A user with that username already exists."),
    ({"__all__": "Not found"}, "Not found"),
    ({"credits": ["Must be positive.", "Must be an integer."]}, "credits: Must be positive.; Must be an integer."),
    ({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "No session x"}, "No session x"),
    ({"title": "Bad Request", "description": "Bad job id"}, "Bad job id"),
    ({"error": "invalid_grant", "error_description": "Invalid username or password."},
     "Invalid username or password."),
    ({"error_message": "Internal server error (request id 1)"}, "Internal server error (request id 1)"),
    (None, "HTTP 502 Bad Gateway"), ("<html>", "HTTP 502 Bad Gateway")])
def test_every_error_shape_gives_the_servers_message(body, message):
    assert error_message(body, "HTTP 502 Bad Gateway") == message


def test_multi_line_messages_become_one_line_and_401_says_how_to_log_in():
    assert api_failure(ShepherdError("two\nlines", 400), Options()) == "two lines"
    assert api_failure(ShepherdError("Token has expired.", 401), Options()) == (
        "Token has expired. Log in again: shepherd login")
    assert api_failure(ShepherdError("Token has expired.", 401), Options(context="lab")).endswith(
        "Log in again: shepherd --context lab login")
    assert api_failure(ShepherdError("Revoked. Log in again (shepherd login).", 401),
                       Options(context="lab")) == "Revoked. Log in again (shepherd --context lab login)."
