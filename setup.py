"""Shepherd: one manager for an HPC cluster's storage, power, boots, images and job sessions.

The gRPC modules are generated from ``protos/*.proto`` at build time (also for
``pip install -e .``), so the contract in the .proto file is the only copy kept in git.
"""

import glob
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"

INSTALL_REQUIRES = [
    "tornado==6.6.1",
    "peewee==4.5.3",
    "psycopg2-binary==2.9.13",
    "grpcio==1.85.1",
    "protobuf==7.36.2",
    "cryptography==50.0.2",
    "click==8.5.1",
    "rich==15.0.0",
    "requests==2.34.2",
    "asyncssh==2.24.1",
    "pyroute2==0.9.7",
    "jsonschema==4.26.0",
    "orjson==3.13.0",            # 2 MB host lists encoded in a few ms (manager/http/encoding.py)
    "prometheus-client==0.26.0",
    "pyghmi==1.6.19",
    "sushy==5.14.0",
]

TEST_REQUIRES = [
    "pytest==9.2.0",
    "hypothesis==6.170.15",
    "ruff==0.17.6",
    "sushy-tools==2.2.0",       # the Redfish emulator the power tests run
    "bcrypt==5.0.0",            # sushy-tools' htpasswd check
    "schemathesis==4.32.5",     # fuzzes the served OpenAPI document (tests/api/test_openapi.py)
]


def compile_protos() -> None:
    """Generate ``protos/*_pb2*.py`` beside their .proto files (imported as ``protos.x_pb2``)."""
    from grpc_tools import protoc

    protos = sorted(glob.glob(os.path.join(HERE, "protos", "*.proto")))
    for proto in protos:
        rel = os.path.relpath(proto, HERE)
        args = ["grpc_tools.protoc", f"-I{HERE}", f"--python_out={HERE}",
                f"--pyi_out={HERE}", f"--grpc_python_out={HERE}", rel]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {rel}")


class BuildWithProtos(build_py):
    """build_py that compiles the protocol first, so wheels and editable installs carry it."""

    def run(self) -> None:
        compile_protos()
        super().run()


setup(
    name="shepherd",
    version=VERSION,
    description="Cluster manager for HPC: Lustre storage, power, boot orchestration, images, sessions",
    python_requires=">=3.11",
    packages=find_packages(include=["manager*", "agent*", "api*", "protos*"]),
    package_data={"protos": ["*.proto", "*.pyi"]},
    setup_requires=["grpcio-tools==1.85.1"],
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES},
    cmdclass={"build_py": BuildWithProtos},
    entry_points={
        "console_scripts": [
            "shepherd-manager = manager.__main__:main",
            "shepherd-agent = agent.__main__:main",
            "shepherd = api.cli.main:main",
        ],
    },
)
