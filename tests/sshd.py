"""A real OpenSSH server inside a test host's network namespace, with a root key pair."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Self

from tests.netns import NetnsHost


class Sshd:
    def __init__(self, host: NetnsHost, workdir: str, password_auth: bool = False) -> None:
        self.host = host
        self.dir = workdir
        self.password_auth = password_auth
        self.client_key = os.path.join(workdir, "client_key")
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        os.makedirs(self.dir, exist_ok=True)
        host_key = os.path.join(self.dir, "host_key")
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
        authorized = os.path.join(self.dir, "authorized_keys")
        with open(self.client_key + ".pub") as src, open(authorized, "w") as dst:
            dst.write(src.read())
        config = os.path.join(self.dir, "sshd_config")
        with open(config, "w") as f:
            f.write(f"ListenAddress {self.host.address}\nPort 22\nHostKey {host_key}\n"
                    f"PidFile {self.dir}/sshd.pid\nAuthorizedKeysFile {authorized}\n"
                    "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
                    f"PasswordAuthentication {'yes' if self.password_auth else 'no'}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = self.host.popen("/usr/sbin/sshd", "-D", "-f", config, "-E",
                                    os.path.join(self.dir, "sshd.log"))
        for _ in range(50):
            if self.host.run("bash", "-c", f"exec 3<>/dev/tcp/{self.host.address}/22").returncode == 0:
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)

    def private_key(self) -> str:
        with open(self.client_key) as f:
            return f.read()
