"""What each RPM says about itself (``rpm -qp``): names, versions, files, owners and modes,
configuration markings and dependencies."""

from __future__ import annotations

import re

import pytest

from tests.packaging.conftest import PACKAGES, VENV, Build, query

SITE = f"{VENV}/lib/python3.11/site-packages"

AGENT_FILES = {
    "/etc/shepherd/agent.env",
    "/usr/bin/shepherd-agent",
    "/usr/lib/systemd/system-preset/80-shepherd-agent.preset",
    "/usr/lib/systemd/system/shepherd-agent.service",
    "/var/lib/shepherd-agent",
}
MANAGER_FILES = {
    "/etc/shepherd/manager.toml",
    "/usr/bin/shepherd-manager",
    "/usr/lib/systemd/system-preset/80-shepherd-manager.preset",
    "/usr/lib/systemd/system/shepherd-manager.service",
    "/usr/lib/sysusers.d/shepherd.conf",
    "/var/lib/shepherd",
}


def dump(package) -> dict[str, list[str]]:
    """``rpm --dump`` by path: size, mtime, digest, mode, owner, group, config, doc, rdev, link."""
    return {fields[0]: fields[1:] for fields in map(str.split, query(package, "--dump").splitlines())}


def locked(tree) -> dict[str, str]:
    """packaging/requirements.lock as {normalised name: version}."""
    pins = {}
    for line in (tree / "packaging" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "_", name).lower()] = version
    return pins


def test_names_and_versions_come_from_setup_py(rpms: Build):
    for name in PACKAGES:
        fields = query(rpms.path(name), "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}").split()
        assert fields == [name, rpms.version, rpms.release, rpms.arch]


def test_agent_and_manager_hold_exactly_their_own_files(rpms: Build):
    assert set(query(rpms.path("shepherd-agent"), "--list").split()) == AGENT_FILES
    assert set(query(rpms.path("shepherd-manager"), "--list").split()) == MANAGER_FILES


def test_common_holds_the_environment_the_code_and_the_commands(rpms: Build):
    files = set(query(rpms.path("shepherd-common"), "--list").split())
    for path in (f"{VENV}/bin/python", f"{VENV}/bin/shepherd-agent", f"{VENV}/bin/shepherd-manager",
                 f"{VENV}/pyvenv.cfg", f"{SITE}/agent/__main__.py", f"{SITE}/manager/__main__.py",
                 f"{SITE}/api/cli/main.py", f"{SITE}/protos/agent_pb2.py", "/usr/bin/shepherd",
                 "/usr/share/doc/shepherd-common/README.md", "/etc/shepherd"):
        assert path in files
    assert f"{SITE}/tests" not in files


def test_every_module_comes_compiled(rpms: Build):
    files = set(query(rpms.path("shepherd-common"), "--list").split())
    sources = [f for f in files if f.startswith(SITE) and f.endswith(".py")]
    missing = [f for f in sources
               if "{}/__pycache__/{}.cpython-311.pyc".format(*f[:-3].rsplit("/", 1)) not in files]
    assert len(sources) > 1000
    assert missing == []


def test_common_holds_every_locked_distribution_and_no_other(rpms: Build, source_tree):
    files = query(rpms.path("shepherd-common"), "--list").split()
    installed = {}
    for path in files:
        found = re.fullmatch(re.escape(SITE) + r"/([^/]+)-([^-/]+)\.dist-info", path)
        if found:
            installed[re.sub(r"[-_.]+", "_", found[1]).lower()] = found[2]
    assert installed == {**locked(source_tree), "shepherd": rpms.version}


def test_symlinks_point_at_their_final_paths(rpms: Build):
    common, agent = dump(rpms.path("shepherd-common")), dump(rpms.path("shepherd-agent"))
    assert common[f"{VENV}/bin/python"][-1] == "python3.11"
    assert common[f"{VENV}/bin/python3.11"][-1] == "/usr/bin/python3.11"
    assert common["/usr/bin/shepherd"][-1] == f"{VENV}/bin/shepherd"
    assert agent["/usr/bin/shepherd-agent"][-1] == f"{VENV}/bin/shepherd-agent"


@pytest.mark.parametrize(("package", "path", "mode", "owner", "group"), [
    ("shepherd-common", "/etc/shepherd", "040755", "root", "root"),
    ("shepherd-common", f"{VENV}/bin/shepherd-agent", "0100755", "root", "root"),
    ("shepherd-agent", "/etc/shepherd/agent.env", "0100644", "root", "root"),
    ("shepherd-agent", "/var/lib/shepherd-agent", "040700", "root", "root"),
    ("shepherd-manager", "/etc/shepherd/manager.toml", "0100640", "root", "shepherd"),
    ("shepherd-manager", "/var/lib/shepherd", "040750", "shepherd", "shepherd"),
])
def test_owners_and_modes(rpms: Build, package, path, mode, owner, group):
    assert dump(rpms.path(package))[path][3:6] == [mode, owner, group]


def test_config_files_are_noreplace_and_nothing_else_is_config(rpms: Build):
    flags = {}
    for name in PACKAGES:
        for line in query(rpms.path(name), "--qf", r"[%{FILENAMES} %{FILEFLAGS:fflags}\n]").splitlines():
            path, _, fflags = line.partition(" ")
            if "c" in fflags:
                flags[path] = fflags
    assert flags == {"/etc/shepherd/agent.env": "cn", "/etc/shepherd/manager.toml": "cn"}


def test_common_requires_python311_and_system_libraries_only(rpms: Build):
    package = rpms.path("shepherd-common")
    requires = query(package, "--requires").splitlines()
    assert "/usr/bin/python3.11" in requires
    bundled = {path.rsplit("/", 1)[-1] for path in query(package, "--list").split()
               if re.search(r"\.so(\.|$)", path)}
    for requirement in requires:
        assert requirement.split("(")[0] not in bundled, f"{requirement} is bundled in a wheel"
        assert not re.match(r"python3(\.\d+)?dist\(", requirement)


def test_common_provides_nothing_from_its_environment(rpms: Build):
    provides = query(rpms.path("shepherd-common"), "--provides").splitlines()
    assert sorted(provides) == [f"shepherd-common = {rpms.version}-{rpms.release}",
                                f"shepherd-common{rpms.isa} = {rpms.version}-{rpms.release}"]


@pytest.mark.parametrize("name", ["shepherd-agent", "shepherd-manager"])
def test_services_require_the_same_common_and_systemd(rpms: Build, name):
    requires = set(query(rpms.path(name), "--requires").splitlines())
    assert f"shepherd-common{rpms.isa} = {rpms.version}-{rpms.release}" in requires
    assert "systemd" in requires


def test_manager_requires_the_tools_that_create_its_user(rpms: Build):
    requires = set(query(rpms.path("shepherd-manager"), "--requires").splitlines())
    assert {"/usr/bin/getent", "/usr/sbin/groupadd", "/usr/sbin/useradd"} <= requires


def test_reproducibility_header_fields(rpms: Build, source_date_epoch):
    for name in PACKAGES:
        header = query(rpms.path(name), "--qf", "%{BUILDHOST} %{BUILDTIME}").split()
        assert header == ["shepherd-build", source_date_epoch]
        mtimes = {fields[1] for fields in dump(rpms.path(name)).values()}
        assert max(map(int, mtimes)) <= int(source_date_epoch)
