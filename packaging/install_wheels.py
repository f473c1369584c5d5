"""Install wheels into the packaged virtual environment as if it already stood at its final path.

rpmbuild stages the files under a buildroot. ``pip install`` would write the buildroot's
interpreter path into every console script's shebang (and RECORD would hash those wrong
shebangs). ``installer`` — the library Fedora's Python packaging macros use — takes the final
interpreter and a destdir separately, so scripts say ``#!/opt/shepherd/bin/python`` and
RECORD describes exactly the files that get installed. Bytecode is compiled afterwards, by
the spec, in one place.

Run it with the same Python minor version as the environment (the scheme's paths follow it)::

    python install_wheels.py --destdir BUILDROOT --venv /opt/shepherd WHEEL...
"""

from __future__ import annotations

import argparse
import sysconfig

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile

INSTALLER_NAME = b"shepherd-rpm\n"


def venv_scheme(venv: str) -> dict[str, str]:
    """Where each part of a wheel goes in a virtual environment rooted at ``venv``."""
    base = {"base": venv, "platbase": venv, "installed_base": venv, "installed_platbase": venv}
    paths = sysconfig.get_paths(scheme="venv", vars=base)
    return {"purelib": paths["purelib"], "platlib": paths["platlib"],
            "scripts": paths["scripts"], "data": paths["data"],
            "headers": f"{venv}/include/site/python{sysconfig.get_python_version()}"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--destdir", required=True, help="the RPM buildroot")
    parser.add_argument("--venv", required=True, help="the environment's final path")
    parser.add_argument("wheels", nargs="+")
    args = parser.parse_args(argv)
    destination = SchemeDictionaryDestination(
        venv_scheme(args.venv), interpreter=f"{args.venv}/bin/python", script_kind="posix",
        destdir=args.destdir)
    for path in sorted(args.wheels):
        with WheelFile.open(path) as source:
            install(source, destination, {"INSTALLER": INSTALLER_NAME})


if __name__ == "__main__":
    main()
