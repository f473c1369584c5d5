"""The packaged systemd units: ``systemd-analyze verify`` and ``security`` on the installed
copies, and the settings the agent and the manager depend on."""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator

import pytest

from agent import config as agent_config
from manager import config as manager_config
from tests.packaging.conftest import run

UNITS = ("shepherd-agent.service", "shepherd-manager.service")
# Each of these gives a service its own mount namespace, where a filesystem the agent mounts
# would stay invisible to the rest of the machine.
MOUNT_NAMESPACE_KEYS = ("PrivateTmp", "ProtectSystem", "ProtectHome", "ReadWritePaths",
                        "ReadOnlyPaths", "InaccessiblePaths", "PrivateDevices", "ProtectKernelTunables",
                        "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                        "ProtectProc", "TemporaryFileSystem", "BindPaths", "PrivateMounts",
                        "MountFlags", "RootDirectory")


def unit_settings(root: pathlib.Path, unit: str) -> dict[str, list[str]]:
    """The unit's ``Key=value`` lines, all values of a key in order."""
    settings: dict[str, list[str]] = {}
    for line in (root / "usr/lib/systemd/system" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture(scope="session")
def analyze_root(scratch_root: pathlib.Path, tmp_path_factory) -> Iterator[pathlib.Path]:
    """The scratch root plus this machine's own units (the targets ours are ordered against).

    ``--root`` makes systemd-analyze look up ExecStart= binaries inside the root, where they
    were installed; a copy keeps the shared scratch root as rpm left it."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian: the systemd package)")
    root = tmp_path_factory.mktemp("analyze-root")
    shutil.copytree(scratch_root, root, symlinks=True, dirs_exist_ok=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True,
                    dirs_exist_ok=True, ignore=lambda d, names: [n for n in names if n in UNITS])
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize("unit", UNITS)
def test_units_verify_without_a_warning(analyze_root: pathlib.Path, unit: str):
    # Unknown keys and bad values are only warnings (exit status 0), so stderr must be empty.
    result = run("systemd-analyze", "verify", f"--root={analyze_root}", unit)
    assert result.stderr == ""


def test_manager_is_well_confined(analyze_root: pathlib.Path):
    # systemd's exposure score, 0 (locked down) to 10 (unconfined), times ten: 1.9 today.
    run("systemd-analyze", "security", "--offline=yes", f"--root={analyze_root}",
        "--threshold=25", "shepherd-manager.service")


def test_agent_runs_as_root_without_a_mount_namespace(scratch_root: pathlib.Path):
    settings = unit_settings(scratch_root, "shepherd-agent.service")
    assert "User" not in settings
    assert not [key for key in MOUNT_NAMESPACE_KEYS if key in settings]
    assert "NoNewPrivileges" not in settings
    assert "CapabilityBoundingSet" not in settings


def test_agent_unit_uses_the_agents_own_state_directory(scratch_root: pathlib.Path):
    settings = unit_settings(scratch_root, "shepherd-agent.service")
    state_dir = agent_config.DEFAULT_STATE_DIR
    assert settings["ExecStart"][0].startswith(f"/usr/bin/shepherd-agent run --state-dir {state_dir} ")
    assert settings["StateDirectory"] == [state_dir.removeprefix("/var/lib/")]
    assert settings["ConditionPathExists"] == [f"{state_dir}/agent.json"]
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == ["4"]  # agent/__main__.py: not registered


def test_manager_unit_runs_unprivileged_with_many_files(scratch_root: pathlib.Path):
    settings = unit_settings(scratch_root, "shepherd-manager.service")
    state_dir = manager_config.DEFAULT_STATE_DIR
    assert settings["ExecStart"] == ["/usr/bin/shepherd-manager serve --config /etc/shepherd/manager.toml"]
    assert settings["User"] == settings["Group"] == ["shepherd"]
    assert settings["LimitNOFILE"] == ["65536"]
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ReadWritePaths"] == [state_dir]
    assert settings["StateDirectory"] == [state_dir.removeprefix("/var/lib/")]
    assert settings["Restart"] == ["on-failure"]


@pytest.mark.parametrize("unit", UNITS)
def test_units_log_to_the_journal_and_start_at_boot(scratch_root: pathlib.Path, unit: str):
    settings = unit_settings(scratch_root, unit)
    assert settings["StandardOutput"] == settings["StandardError"] == ["journal"]
    assert settings["WantedBy"] == ["multi-user.target"]
    preset = scratch_root / f"usr/lib/systemd/system-preset/80-{unit.removesuffix('.service')}.preset"
    assert f"enable {unit}" in preset.read_text().splitlines()
