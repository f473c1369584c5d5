"""The RPMs, built once per test session by packaging/build-rpms, and a scratch root they are
installed into (``rpm --root``), shared by every test in this package.

A build takes about 40 seconds (a tools environment, the locked wheels, rpmbuild). The session
builds from a snapshot of the working tree with one SOURCE_DATE_EPOCH, so an edit or a commit
made meanwhile cannot make its two builds (test_reproducible) differ.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
PACKAGES = ("shepherd-common", "shepherd-agent", "shepherd-manager")
VENV = "/opt/shepherd"


def run(*argv: str | os.PathLike, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; a failure shows its output (CalledProcessError would hide it)."""
    result = subprocess.run([str(a) for a in argv], check=False, capture_output=True, text=True,
                            timeout=timeout, **kwargs)
    assert result.returncode == 0, (f"{' '.join(map(str, argv))} exited {result.returncode}\n"
                                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def query(package: pathlib.Path, *args: str) -> str:
    """``rpm -qp ARGS PACKAGE``'s output."""
    return run("rpm", "-qp", *args, package).stdout


@dataclasses.dataclass(frozen=True)
class Build:
    """One run of packaging/build-rpms: where its packages are and what they should say."""

    output: pathlib.Path
    version: str
    isa: str  # what rpm appends to a name for "this architecture's", e.g. "(x86-64)"
    release: str = "1"
    arch: str = platform.machine()

    def path(self, name: str) -> pathlib.Path:
        return self.output / f"{name}-{self.version}-{self.release}.{self.arch}.rpm"

    def paths(self) -> list[pathlib.Path]:
        return [self.path(name) for name in PACKAGES]


def setup_version(tree: pathlib.Path) -> str:
    return run(sys.executable, "setup.py", "--version", cwd=tree).stdout.split()[-1]


@pytest.fixture(scope="session")
def source_date_epoch() -> str:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return os.environ["SOURCE_DATE_EPOCH"]
    return run("git", "-C", REPO, "log", "-1", "--format=%ct").stdout.strip()


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The working tree as it is now, as build-rpms takes it (files git tracks or would track),
    in a fresh git repository: every build of the session reads the same files, however the
    checkout changes meanwhile."""
    tree = tmp_path_factory.mktemp("source-tree")
    names = run("git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, names.stdout.split("\0")):
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    run("git", "init", "-q", tree)
    return tree


@pytest.fixture(scope="session")
def build_rpms(tmp_path_factory: pytest.TempPathFactory, source_tree: pathlib.Path,
               source_date_epoch: str):
    """``build_rpms()`` runs packaging/build-rpms into a new directory and returns its Build."""
    if not shutil.which("rpmbuild"):
        pytest.skip("rpmbuild is not installed (Debian: apt-get install rpm; tests/run does)")
    env = {**os.environ, "SOURCE_DATE_EPOCH": source_date_epoch}
    version = setup_version(source_tree)
    isa = run("rpm", "--eval", "%{_isa}").stdout.strip()

    def build() -> Build:
        top = tmp_path_factory.mktemp("rpm-build")
        run(source_tree / "packaging" / "build-rpms", "--workdir", top / "work",
            "--output", top / "rpms", env=env, timeout=900)
        shutil.rmtree(top / "work")
        return Build(top / "rpms", version, isa)
    return build


@pytest.fixture(scope="session")
def rpms(build_rpms) -> Build:
    return build_rpms()


@pytest.fixture(scope="session")
def scratch_root(rpms: Build, tmp_path_factory: pytest.TempPathFactory) -> Iterator[pathlib.Path]:
    """All three packages installed under an empty directory.

    ``--nodeps``: the directory has no python3.11 or systemd packages in its database;
    ``--noscripts``: it has no /bin/sh to run them with (test_scriptlets runs them instead).
    """
    root = tmp_path_factory.mktemp("scratch-root")
    rpm = ("rpm", "--root", root, "--dbpath", "/var/lib/rpm")
    run(*rpm, "--initdb")
    run(*rpm, "--install", "--nodeps", "--noscripts", *rpms.paths())
    yield root
    shutil.rmtree(root)


def packaged_python(root: pathlib.Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run the packaged environment's interpreter in a clean environment, outside the checkout.

    Its bin/python is a symlink to /usr/bin/python3.11, which resolves to this machine's: the
    packages' one requirement, met here too. pyvenv.cfg beside it makes it the packaged venv.
    """
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return run(root / VENV.lstrip("/") / "bin" / "python", *args, env=env, cwd=root, **kwargs)
