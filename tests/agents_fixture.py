"""Real ``shepherd-agent`` processes in network namespaces, and a manager they can reach.

``Lan`` is a manager bound to 0.0.0.0 whose server certificate names every test host's
gateway, so each agent reaches it at its own namespace's gateway address (the namespaces
have no routes to one another). ``Lan.restart`` brings up a new manager on the same state
directory, database and ports, as a restarted ``shepherd-manager serve`` would.

``ManagerProcess`` runs ``shepherd-manager serve`` as a child process instead, on the same
terms, so that a test can kill it with SIGKILL and start it again on the same state.

``AgentProcess`` drives the real CLI (``python -m agent``) inside a namespace, with its own
state directory; ``run`` logs to a file, so tests can count how often an action started.
Nothing here sleeps blindly: ``wait_until`` polls a condition against a deadline.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from api.client import Client
from tests.manager_process import RunningManager
from tests.netns import NetnsHost

AGENT = [sys.executable, "-m", "agent"]
MANAGER = [sys.executable, "-m", "manager"]
CLI_TIMEOUT = 30
T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float, what: str,
               interval: float = 0.2, evidence: Callable[[], str] | None = None) -> T:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``, followed
    by ``evidence()`` (e.g. the agent's log) when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{evidence()}" if evidence is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


def holds_for(condition: Callable[[], object], seconds: float, interval: float = 0.2) -> bool:
    """True if ``condition`` stays truthy for ``seconds``; False as soon as it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(interval)
    return bool(condition())


class Lan:
    """A manager reachable from every host in ``hosts`` (at each one's gateway address)."""

    def __init__(self, workdir: str, hosts: list[NetnsHost], **settings: Any) -> None:
        self.state_dir = os.path.join(workdir, "manager-state")
        self.database_url = f"sqlite:///{workdir}/manager.db"
        self.hosts = hosts
        # heartbeat well inside RunningManager's 3 s contact timeout, or healthy streams
        # would be closed as silent
        self.settings = {"address": "0.0.0.0", "public_host": hosts[0].gateway,
                         "server_names": ",".join(h.gateway for h in hosts),
                         "heartbeat_interval": 1, **settings}
        self.manager: RunningManager | None = None
        self._admin: Client | None = None

    def start(self, **ports: int) -> Lan:
        self.manager = RunningManager(self.state_dir, self.database_url, **self.settings,
                                      **ports).start()
        self._admin = None
        return self

    def stop(self) -> None:
        if self.manager is not None:
            self.manager.stop()
            self.manager = None

    def restart(self) -> None:
        """Stop, then start a new manager on the same state, database and ports."""
        ctx = self.manager.manager.ctx
        ports = {"port": self.manager.manager.port, "agent_port": ctx.agent_port,
                 "registration_port": ctx.registration_port}
        self.stop()
        self.start(**ports)

    @property
    def admin(self) -> Client:
        if self._admin is None:
            with open(os.path.join(self.state_dir, "initial-admin-password")) as f:
                password = f.read().strip()
            self._admin = Client(self.manager.url, verify=self.manager.ca_path, retries=1)
            self._admin.login("admin", password)
        return self._admin

    @property
    def fingerprint(self) -> str:
        return self.manager.manager.ctx.ca.fingerprint

    def url_for(self, host: NetnsHost) -> str:
        """The manager's URL as seen from inside ``host``."""
        return f"https://{host.gateway}:{self.manager.manager.port}"

    def token(self, credits: int = 1, profile: str = "compute_node") -> dict[str, Any]:
        return self.admin.post("/api/registration_token/", {"profile": profile,
                                                             "credits": credits})

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the manager's loop and wait for it from the test's thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.manager.loop).result(timeout)

    def submit(self, host_id: int, name: str, args: dict | None = None,
               timeout: float = 30) -> str:
        return self.call(self.manager.dispatcher.submit(host_id, name, args, timeout))

    def wait(self, action_id: str, timeout: float = 30) -> Any:
        return self.call(self.manager.dispatcher.wait(action_id, timeout), timeout + 5)

    def dispatch(self, host_id: int, name: str, args: dict | None = None,
                 timeout: float = 30) -> Any:
        return self.wait(self.submit(host_id, name, args, timeout), timeout)

    def wait_command(self, command: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """Poll a command until it is complete; returns its final document."""
        try:
            return wait_until(lambda: (c := self.admin.get(command["resource_uri"]))["complete"]
                              and c, timeout, f"command {command['id']} ({command['message']})")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; where it stands: {self._progress(command)}") from None

    def _progress(self, command: dict[str, Any]) -> str:
        """Each job of ``command`` with its state and its steps' states, for a timeout's report."""
        jobs = []
        for uri in self.admin.get(command["resource_uri"])["jobs"]:
            job = self.admin.get(uri)
            steps = [(s["class_name"], s["state"]) for s in
                     (self.admin.get(step) for step in job["steps"])]
            jobs.append(f"{job['class_name']} {job['state']} steps={steps}")
        return "; ".join(jobs)

    def remove(self, host_id: int) -> dict[str, Any]:
        """DELETE the host and wait for the removal command to finish."""
        return self.wait_command(self.admin.delete(f"/api/host/{host_id}/")["command"])

    def host(self, host_id: int) -> dict[str, Any] | None:
        found = self.admin.get("/api/host/", id=host_id)["objects"]
        return found[0] if found else None

    def contact_alerts(self, host_id: int) -> list[dict[str, Any]]:
        alerts = self.admin.get("/api/alert/", alert_type="HostContactAlert", active="true",
                                alert_item_id=host_id)["objects"]
        return alerts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagerProcess:
    """``shepherd-manager serve`` as a child process, reachable from every test host.

    ``program`` is the command before ``serve`` (a test may run a wrapper that declares
    more job classes and then calls the manager's own ``main``)."""

    def __init__(self, workdir: str, hosts: list[NetnsHost],
                 program: list[str] | None = None) -> None:
        self.state_dir = os.path.join(workdir, "manager-state")
        self.hosts = hosts
        self.program = program or MANAGER
        self.ports = {"port": free_port(), "agent-port": free_port(),
                      "registration-port": free_port()}
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[str] = []

    def start(self) -> ManagerProcess:
        flags = [f"--{name}={value}" for name, value in self.ports.items()]
        self.proc = subprocess.Popen(
            [*self.program, "serve", "--state-dir", self.state_dir,
             "--address", "0.0.0.0", "--public-host", self.hosts[0].gateway,
             "--server-names", ",".join(h.gateway for h in self.hosts),
             "--heartbeat-interval", "1", "--contact-timeout", "5", *flags],
            stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            self.log_lines.append(line)
            if "REST API on" in line:
                break
        else:
            raise AssertionError("the manager did not start: " + "".join(self.log_lines))
        threading.Thread(target=lambda: self.log_lines.extend(self.proc.stderr), daemon=True).start()
        return self

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports['port']}"

    def url_for(self, host: NetnsHost) -> str:
        return f"https://{host.gateway}:{self.ports['port']}"

    @property
    def fingerprint(self) -> str:
        from api.client import ca_fingerprint
        with open(os.path.join(self.state_dir, "tls", "ca.crt"), "rb") as f:
            return ca_fingerprint(f.read())

    def admin(self) -> Client:
        with open(os.path.join(self.state_dir, "initial-admin-password")) as f:
            password = f.read().strip()
        client = Client(self.url, verify=os.path.join(self.state_dir, "tls", "ca.crt"), retries=1)
        client.login("admin", password)
        return client


class AgentProcess:
    """One agent: the CLI run inside ``host`` against ``state_dir``; ``run`` logs to a file."""

    def __init__(self, host: NetnsHost, state_dir: str, fqdn: str) -> None:
        self.host = host
        self.state_dir = state_dir
        self.fqdn = fqdn
        self.log_path = state_dir + ".log"
        self.proc: subprocess.Popen | None = None
        self.host_id: int | None = None

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """``shepherd-agent ARGS --state-dir DIR`` inside the namespace."""
        return self.host.run(*AGENT, *args, "--state-dir", self.state_dir, timeout=CLI_TIMEOUT,
                             env={**os.environ, **(env or {})})

    def register(self, lan: Lan | ManagerProcess, token: dict[str, Any] | str,
                 *extra: str) -> \
            subprocess.CompletedProcess:
        """Register with ``token`` (the API's document or a bare secret) at our gateway."""
        secret = token if isinstance(token, str) else token["secret"]
        done = self.cli("register", "--manager", lan.url_for(self.host), "--token", secret,
                        "--ca-sha256", lan.fingerprint, "--fqdn", self.fqdn, *extra)
        match = re.search(r" as host (\d+) ", done.stdout)
        if done.returncode == 0 and match:
            self.host_id = int(match.group(1))
        return done

    def start(self) -> AgentProcess:
        """``shepherd-agent run`` in the background, stdout and stderr appended to the log."""
        with open(self.log_path, "ab") as log:
            self.proc = self.host.popen(*AGENT, "run", "--state-dir", self.state_dir,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return self

    def status(self) -> subprocess.CompletedProcess:
        return self.cli("status")

    def connected(self) -> bool:
        return self.status().returncode == 0

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the agent; ``ip netns exec`` execs it, so the Popen's pid is the agent's."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def starts(self, action_id: str) -> int:
        """How often the agent started ``action_id`` (the runner logs "received" per start;
        a redelivery of a running or finished action is logged differently)."""
        return len(re.findall(rf": action {re.escape(action_id)} \([^)]*\) received$",
                              self.log(), re.MULTILINE))

    def files(self) -> list[str]:
        """Every file under the state directory (relative paths)."""
        found = []
        for root, _, names in os.walk(self.state_dir):
            found += [os.path.relpath(os.path.join(root, n), self.state_dir) for n in names]
        return sorted(found)
