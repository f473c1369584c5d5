"""A second build of the same tree, in another directory, gives the same packages.

What is promised is what ``rpm -qp`` shows — names, versions, file lists with sizes, modes,
owners, times and digests, dependencies, scriptlets, config markings — except the bytes of
compiled bytecode: marshal's output can depend on reference counts inside the compiling
process, so a .pyc's size and digest are left out of the comparison. (In practice the whole
.rpm files have come out byte-for-byte identical.)
"""

from __future__ import annotations

import pytest

from tests.packaging.conftest import PACKAGES, Build, query

QUERIES = {
    "header": ("--qf", "%{NEVRA} %{BUILDHOST} %{BUILDTIME} %{PAYLOADCOMPRESSOR} %{LICENSE}\n"),
    "list": ("--list",),
    "provides": ("--provides",),
    "requires": ("--requires",),
    "scripts": ("--scripts",),
    "config": ("--configfiles",),
}


def described(package) -> dict[str, str]:
    """What rpm says about ``package``, with the bytes of bytecode files masked."""
    facts = {name: query(package, *args) for name, args in QUERIES.items()}
    lines = []
    for line in query(package, "--dump").splitlines():
        path, size, mtime, digest, rest = line.split(" ", 4)
        if path.endswith(".pyc"):
            size, digest = "-", "-"
        lines.append(f"{path} {size} {mtime} {digest} {rest}")
    facts["dump"] = "\n".join(lines)
    return facts


@pytest.fixture(scope="module")
def second(build_rpms) -> Build:
    return build_rpms()


@pytest.mark.parametrize("name", PACKAGES)
def test_second_build_describes_the_same_package(rpms: Build, second: Build, name: str):
    assert rpms.output != second.output
    first, again = described(rpms.path(name)), described(second.path(name))
    for fact, text in first.items():
        assert again[fact] == text, f"{name}: rpm's {fact} differs between two builds"
