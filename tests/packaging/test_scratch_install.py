"""The packages installed into a scratch root (``rpm --root DIR``) and the packaged programs
run from there: the environment must work at the path it was installed to, with no trace of
the machine or directory it was built in."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

from manager import config
from tests.packaging.conftest import VENV, Build, packaged_python, run


def packaged(root: pathlib.Path, command: str, *args: str) -> str:
    """Run a packaged console script, as its shebang would, with the packaged interpreter."""
    return packaged_python(root, root / VENV.lstrip("/") / "bin" / command, *args).stdout


def test_rpm_database_lists_the_three_packages(scratch_root: pathlib.Path, rpms: Build):
    names = run("rpm", "--root", scratch_root, "--dbpath", "/var/lib/rpm", "-qa",
                "--qf", r"%{NAME}-%{VERSION}\n").stdout.split()
    assert sorted(names) == sorted(f"{n}-{rpms.version}" for n in
                                   ("shepherd-common", "shepherd-agent", "shepherd-manager"))


def test_packaged_agent_reports_its_version(scratch_root: pathlib.Path, rpms: Build):
    assert packaged(scratch_root, "shepherd-agent", "--version").strip() == \
        f"shepherd-agent, version {rpms.version}"


def test_packaged_manager_and_cli_show_their_help(scratch_root: pathlib.Path):
    assert "serve" in packaged(scratch_root, "shepherd-manager", "--help")
    assert "Usage: shepherd" in packaged(scratch_root, "shepherd", "--help")


def test_packaged_code_is_what_runs(scratch_root: pathlib.Path):
    code = ("import sys, agent, manager, api, protos.agent_pb2 as pb; "
            "print(sys.prefix); print(*(m.__file__ for m in (agent, manager, api, pb)), sep='\\n')")
    lines = packaged_python(scratch_root, "-c", code).stdout.splitlines()
    venv = str(scratch_root / VENV.lstrip("/"))
    assert lines[0] == venv
    assert all(path.startswith(f"{venv}/lib/python3.11/site-packages/") for path in lines[1:])


def test_compiled_dependencies_load(scratch_root: pathlib.Path):
    packaged_python(scratch_root, "-c", "import grpc._cython.cygrpc, psycopg2._psycopg, "
                    "cryptography.hazmat.bindings._rust, rpds, tornado.speedups, _cffi_backend")


def test_packaged_manager_migrates_with_the_packaged_config(scratch_root: pathlib.Path, tmp_path):
    toml = scratch_root / "etc/shepherd/manager.toml"
    out = packaged(scratch_root, "shepherd-manager", "migrate", "--config", str(toml),
                   "--state-dir", str(tmp_path))
    assert "applied" in out
    assert (tmp_path / "shepherd.db").exists()


def test_default_manager_config_names_only_real_settings(scratch_root: pathlib.Path):
    path = scratch_root / "etc/shepherd/manager.toml"
    assert config.load(environ={}, config_file=str(path)).state_dir == config.DEFAULT_STATE_DIR
    keys = re.findall(r"^#? ?([a-z_]+) = ", path.read_text(), re.MULTILINE)
    assert "agent_install_command" in keys
    assert set(keys) <= {s.name for s in config.SETTINGS}


def test_no_file_mentions_the_build_directories(scratch_root: pathlib.Path, rpms: Build):
    leaks = (b"BUILDROOT", str(rpms.output.parent).encode(), b"/rpm-build")
    for path in scratch_root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert not [s for s in leaks if s in data], path


def test_bytecode_is_checked_against_its_source_hash(scratch_root: pathlib.Path):
    # PEP 552 flags: 0b11 = hash-based and checked, so a patched .py is never shadowed.
    pyc = scratch_root / VENV.lstrip("/") / "lib/python3.11/site-packages/agent/__pycache__"
    for path in pyc.glob("*.pyc"):
        assert int.from_bytes(path.read_bytes()[4:8], "little") == 0b11, path


def test_console_scripts_use_the_packaged_interpreter(scratch_root: pathlib.Path):
    for command in ("shepherd", "shepherd-agent", "shepherd-manager"):
        script = scratch_root / VENV.lstrip("/") / "bin" / command
        assert script.read_text().splitlines()[0] == f"#!{VENV}/bin/python"


def test_installed_commands_run_through_their_final_paths(scratch_root: pathlib.Path, rpms: Build):
    """/usr/bin/shepherd-agent → /opt/shepherd/bin/shepherd-agent → #!/opt/shepherd/bin/python,
    followed for real: a private mount namespace shows the scratch root's /opt/shepherd at
    /opt/shepherd (over an empty tmpfs, so nothing of this machine's /opt changes)."""
    if subprocess.run(["unshare", "--mount", "true"], check=False, capture_output=True).returncode != 0:
        pytest.skip("no private mount namespaces here (unshare --mount failed)")
    venv = scratch_root / VENV.lstrip("/")
    script = (f"mount -t tmpfs shepherd-test /opt && mkdir {VENV} && mount --bind {venv} {VENV} "
              f"&& {scratch_root}/usr/bin/shepherd-agent --version "
              f"&& {scratch_root}/usr/bin/shepherd-manager --version")
    out = run("unshare", "--mount", "--propagation", "private", "sh", "-c", script,
              env={"PATH": "/usr/bin:/bin"}).stdout
    assert out.splitlines() == [f"shepherd-agent, version {rpms.version}",
                                f"shepherd-manager, version {rpms.version}"]
