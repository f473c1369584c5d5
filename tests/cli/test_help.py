"""``--help`` with a worked example on every command, and shell completion scripts."""

import os
import subprocess

import click
import pytest

from api.cli.main import main
from tests.cli.conftest import SHEPHERD


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", command_paths(main), ids=lambda p: " ".join(p) or "shepherd")
def test_every_command_has_help_with_an_example(shepherd, path):
    result = shepherd(*path, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "$ shepherd" in result.stdout


def test_the_command_tree():
    assert [" ".join(p) for p in command_paths(main)[1:]] == [
        "alert", "alert dismiss", "alert list", "audit", "audit list", "command", "command cancel",
        "command list", "command run", "command show", "command wait", "completion", "context",
        "context list", "context use", "host", "host list", "host remove", "host set-state",
        "host show", "job", "job cancel", "login", "logout", "node", "node import", "node list",
        "node set", "power", "power cycle", "power off", "power on", "power status", "token",
        "token cancel", "token create", "token list", "user", "user create", "user delete",
        "user list", "user set-password"]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts(shepherd, shell):
    script = shepherd("completion", shell).stdout
    assert "_SHEPHERD_COMPLETE" in script and f"{shell}_complete" in script


def complete(words: str, config_home: str) -> list[str]:
    """What bash would offer after ``shepherd <words>`` (click's completion protocol)."""
    env = {**os.environ, "_SHEPHERD_COMPLETE": "bash_complete", "COMP_WORDS": f"shepherd {words}",
           "COMP_CWORD": str(len(words.split(" "))), "XDG_CONFIG_HOME": config_home}
    out = subprocess.run([SHEPHERD], env=env, capture_output=True, text=True, timeout=30, check=False)
    return [line.split(",", 1)[1] for line in out.stdout.splitlines()]


def test_completion_offers_commands_options_and_context_names(tmp_path, config_dir):
    assert complete("ho", str(tmp_path)) == ["host"]
    assert "--json" in complete("host list --", str(tmp_path))
    assert complete("host set-state node1 re", str(tmp_path)) == ["removed"]
    assert complete("command ", str(tmp_path)) == ["cancel", "list", "run", "show", "wait"]
    (tmp_path / "shepherd").mkdir()
    (tmp_path / "shepherd" / "config.toml").write_text(
        'current_context = "lab"\n[contexts.lab]\nurl = "https://a"\n[contexts.prod]\nurl = "https://b"\n')
    assert complete("context use ", str(tmp_path)) == ["lab", "prod"]
    assert complete("--context p", str(tmp_path)) == ["prod"]
