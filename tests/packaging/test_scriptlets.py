"""The packages' scriptlets, taken out of the RPMs and run with /bin/sh against stand-in
systemctl, getent, groupadd and useradd that record how they were called.

rpm passes each scriptlet the number of instances left after the operation: %post gets 1 on
a first install and 2 on an upgrade, %preun 0 on removal and 1 on an upgrade, %postun 0 on
removal and 1 on an upgrade.
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.packaging.conftest import Build, query

TAGS = {"pre": "PREIN", "post": "POSTIN", "preun": "PREUN", "postun": "POSTUN"}


def scriptlet(rpms: Build, package: str, which: str) -> str:
    tag = TAGS[which]
    program = query(rpms.path(package), "--qf", f"%{{{tag}PROG}}").strip()
    assert program == "/bin/sh"
    return query(rpms.path(package), "--qf", f"%{{{tag}}}")


def run_scriptlet(tmp_path: pathlib.Path, body: str, count: int, *, tools_fail: bool = False,
                  user_exists: bool = False) -> list[str]:
    """Run ``body`` as rpm would (``sh -c body - COUNT``); return the stand-ins' calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    log.write_text("")
    for tool in ("systemctl", "getent", "groupadd", "useradd"):
        failing = not user_exists if tool == "getent" else tools_fail
        status = 1 if failing else 0
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {status}\n')
        (bin_dir / tool).chmod(0o755)
    result = subprocess.run(["/bin/sh", "-c", body, "-", str(count)], check=False, capture_output=True,
                            text=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines()


@pytest.mark.parametrize("unit", ["agent", "manager"])
@pytest.mark.parametrize(("which", "count", "expected"), [
    ("post", 1, ["systemctl --no-reload preset shepherd-{unit}.service"]),
    ("post", 2, []),
    ("preun", 0, ["systemctl --no-reload disable --now shepherd-{unit}.service"]),
    ("preun", 1, []),
    ("postun", 1, ["systemctl try-restart shepherd-{unit}.service"]),
    ("postun", 0, []),
])
def test_services_are_enabled_stopped_and_restarted_conventionally(
        rpms: Build, tmp_path, unit, which, count, expected):
    body = scriptlet(rpms, f"shepherd-{unit}", which)
    assert run_scriptlet(tmp_path, body, count) == [line.format(unit=unit) for line in expected]


@pytest.mark.parametrize("unit", ["agent", "manager"])
@pytest.mark.parametrize(("which", "count"), [("post", 1), ("preun", 0), ("postun", 1)])
def test_a_failing_systemctl_does_not_fail_the_transaction(rpms: Build, tmp_path, unit, which, count):
    # In a container or an image build, systemctl has no systemd to talk to.
    body = scriptlet(rpms, f"shepherd-{unit}", which)
    assert len(run_scriptlet(tmp_path, body, count, tools_fail=True)) == 1


def test_manager_pre_creates_its_system_user(rpms: Build, tmp_path):
    calls = run_scriptlet(tmp_path, scriptlet(rpms, "shepherd-manager", "pre"), 1)
    assert calls == [
        "getent group shepherd",
        "groupadd -r shepherd",
        "getent passwd shepherd",
        "useradd -r -g shepherd -d /var/lib/shepherd -s /sbin/nologin -c Shepherd manager shepherd",
    ]


def test_manager_pre_leaves_an_existing_user_alone(rpms: Build, tmp_path):
    calls = run_scriptlet(tmp_path, scriptlet(rpms, "shepherd-manager", "pre"), 2, user_exists=True)
    assert calls == ["getent group shepherd", "getent passwd shepherd"]


def test_only_the_services_have_scriptlets(rpms: Build):
    assert query(rpms.path("shepherd-common"), "--scripts") == ""
    assert "preinstall" not in query(rpms.path("shepherd-agent"), "--scripts")
