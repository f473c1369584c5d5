"""Real protocol peers for the power drivers' tests: virtual IPMI BMCs and a Redfish emulator.

``VirtualBmcs`` starts a child process holding N IPMI 2.0 BMCs on loopback UDP, built on
pyghmi's own BMC server (``pyghmi.ipmi.bmc.Bmc``), each simulating one node's power state.
A BMC can be told to lie (accept on/off and keep its state), to answer slowly, or to ignore
graceful shutdowns. They live in a child process so that pyghmi's process-wide session
tables and IO thread are not shared with the client under test, and so that the server-side
fix below never touches the client.

The fix (test-peers.md, "fix b"): pyghmi's server always answers RMCP+ Open Session with
cipher suite 3 (HMAC-SHA1) and status 0, even when the client proposed SHA-256, and pyghmi's
client (which opens with SHA-256) then fails unpacking a SHA-1 RAKP2. A real BMC that lacks
the proposed algorithms answers status 0x11 ("no cipher suite match"), upon which the client
retries with SHA-1. The test BMC is made to answer like a real one; the production client is
left as it is.

``RedfishEmulator`` runs sushy-tools' emulator with its fake systems driver (no libvirt), its
own state directory and a bcrypt htpasswd, with the fake driver's random 1-11 s delay before
a power change lands patched to zero.

Run ``python -m tests.power_peers bmc`` (config as JSON on stdin) or ``... redfish`` to use
the child processes by hand.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from typing import Any, Self

import requests
import urllib3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (TCP or UDP on 127.0.0.1)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- virtual IPMI BMCs (parent side) ----------------------------------------------------------

class VirtualBmcs:
    """N virtual BMCs; ``ports[i]`` is BMC i's UDP port on 127.0.0.1.

    ``power`` is the initial state of every node; ``fields`` set every BMC as ``set`` does.
    BMCs are served by child processes of at most ``PER_PROCESS`` each (pyghmi's server loop
    uses ``select``, bounded to 1024 descriptors; several processes also use several cores).
    The BMCs of one process share its server loop, so a slow BMC (``delay``) slows its
    neighbours too: give slow BMCs their own instance.
    """

    PER_PROCESS = 250

    def __init__(self, count: int = 1, username: str = "admin", password: str = "password",
                 power: str = "off", **fields: Any) -> None:
        self.count = count
        self.config = {"username": username, "password": password, "power": power,
                       "fields": fields}
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        try:
            for first in range(0, self.count, self.PER_PROCESS):
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.power_peers", "bmc"], cwd=ROOT, text=True,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE))
                count = min(self.PER_PROCESS, self.count - first)
                self._send(self.procs[-1], {**self.config, "count": count})
            for proc in self.procs:
                self.ports += self._receive(proc)["ports"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def set(self, index: int = 0, **fields: Any) -> None:
        """Change BMC ``index``: ``power`` ("on"/"off"); ``lie`` (acknowledge on/off, change
        nothing); ``delay`` (seconds before each answer: blocks the whole process);
        ``settle_s`` (seconds before an on/off shows in the state); ``soft_off_s`` (seconds
        a graceful shutdown takes; None: the OS ignores it); ``silent_to_strangers`` (no
        answer to an unknown user's login, as pyghmi's server does); ``forget_sessions``
        (drop every session now, as a restarting BMC does)."""
        self._call(index, {"op": "set", **fields})

    def get(self, index: int = 0) -> dict[str, Any]:
        """BMC ``index``'s state: power, and the chassis controls it received in order."""
        return self._call(index, {"op": "get"})

    def _call(self, index: int, message: dict[str, Any]) -> dict[str, Any]:
        proc = self.procs[index // self.PER_PROCESS]
        with self._lock:
            self._send(proc, {**message, "index": index % self.PER_PROCESS})
            return self._receive(proc)

    @staticmethod
    def _send(proc: subprocess.Popen, message: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()

    @staticmethod
    def _receive(proc: subprocess.Popen) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("virtual BMC process exited")
        return json.loads(line)


# --- virtual IPMI BMCs (child side) -----------------------------------------------------------

CONTROLS = {0: "off", 1: "on", 2: "cycle", 3: "reset", 5: "soft"}
NOT_IN_PRESENT_STATE = 0xD5     # IPMI completion code: command not supported in present state


def _serve_bmcs() -> None:
    """Child process: build the BMCs from the first stdin line, then serve control lines
    (stdin) on a thread and IPMI (pyghmi's server loop) on the main thread."""
    from pyghmi.ipmi import bmc
    from pyghmi.ipmi.private import serversession

    from agent.power.pyghmi_fixes import use_socket_flags

    use_socket_flags()
    _answer_like_a_real_bmc(serversession.ServerSession)
    config = json.loads(sys.stdin.readline())

    class SimulatedNodeBmc(bmc.Bmc):
        """One node's BMC: chassis status and control over a simulated power state."""

        def __init__(self) -> None:
            super().__init__({config["username"]: config["password"]}, port=0,
                             address="127.0.0.1")
            # Bound to port 0: pyghmi routes sessions by self.port, so it must be the real one.
            self.port = self.serversocket.getsockname()[1]
            self.power, self.lie, self.delay = config["power"], False, 0.0
            self.settle_s = 0.0
            self.soft_off_s: float | None = 0.0
            self.silent_to_strangers = False
            self.pending: tuple[str, float] | None = None     # (state, when it lands)
            self.controls: list[str] = []

        def get_power_state(self) -> str:
            self._slowly()
            return self.current_power()

        def current_power(self) -> str:
            if self.pending is not None and time.monotonic() >= self.pending[1]:
                self.power, self.pending = self.pending[0], None
            return self.power

        def control_chassis(self, request: dict, session: Any) -> None:
            self._slowly()
            self.controls.append(CONTROLS.get(request["data"][0], str(request["data"][0])))
            super().control_chassis(request, session)

        def power_on(self) -> int:
            return self._switch("on", self.settle_s)

        def power_off(self) -> int:
            return self._switch("off", self.settle_s)

        def power_shutdown(self) -> int:
            if self.current_power() == "on" and self.soft_off_s is not None:
                self._switch("off", self.soft_off_s)
            return 0

        def power_cycle(self) -> int:
            return NOT_IN_PRESENT_STATE if self.current_power() == "off" else 0

        def power_reset(self) -> int:
            return NOT_IN_PRESENT_STATE if self.current_power() == "off" else 0

        def _switch(self, state: str, after: float) -> int:
            if not self.lie:
                self.pending = (state, time.monotonic() + after)
                self.current_power()
            return 0

        def _slowly(self) -> None:
            if self.delay:
                time.sleep(self.delay)

    bmcs = [SimulatedNodeBmc() for _ in range(config["count"])]
    for target in bmcs:
        _set_fields(target, config["fields"])
    _reply({"ports": [b.port for b in bmcs]})
    threading.Thread(target=_control_loop, args=(bmcs,), daemon=True).start()
    while True:
        try:
            bmc.Bmc.listen(timeout=1)
        except AttributeError:
            # pyghmi's server loop can hand a packet of a session it just dropped to the
            # session object (no ``sessionless_data``) and die; drop that packet, as a BMC
            # would, and serve on.
            continue


def _answer_like_a_real_bmc(server_session: type) -> None:
    """Two answers of pyghmi's BMC server made those of a real BMC (test-peers.md, fix b):

    - Open Session proposing other than HMAC-SHA1: status 0x11 ("no cipher suite match"),
      instead of a silent switch to cipher suite 3 that pyghmi's client cannot follow;
    - RAKP1 for an unknown user: RAKP2 with status 0x0D ("unauthorized name"), instead of
      silence (kept for BMCs told ``silent_to_strangers``, to test a BMC that never answers).
    """
    from pyghmi.ipmi.private import constants

    open_session = server_session.create_open_session_response
    rakp1 = server_session._got_rakp1

    def create_open_session_response(self: Any, request: bytearray) -> bytearray:
        if request[12] != 1 or request[20] != 1:    # authentication / integrity: not SHA-1
            return bytearray([request[0], 0x11, 0, 0]) + request[4:8]
        return open_session(self, request)

    def got_rakp1(self: Any, data: bytearray) -> None:
        name = bytes(data[28:]).decode("utf-8", "replace")
        if self.authdata.get(name) is None and not self.bmc.silent_to_strangers:
            self.send_payload(bytearray([data[0], 0x0D, 0, 0]) + self.clientsessionid,
                              constants.payload_types["rakp2"], retry=False)
            return
        rakp1(self, data)

    server_session.create_open_session_response = create_open_session_response
    server_session._got_rakp1 = got_rakp1
    _keep_other_bmcs_sessions(server_session)


def _keep_other_bmcs_sessions(server_session: type) -> None:
    """A third fix, for many BMCs in one process: pyghmi's server keys its sessions by the
    client's address and then by its own port, and when a client starts a new login from an
    address that has a session, it forgets the sessions of that client address with *every*
    BMC of the process. A client that talks to many BMCs from one socket (pyghmi's does, 64
    per socket) then finds its other sessions dead after any re-login. A real BMC only
    forgets its own: so does this one."""
    import struct

    from pyghmi.ipmi.private import session as ipmi_session

    handle = server_session._handle_ipmi_packet

    def _handle_ipmi_packet(self: Any, data: bytearray, sockaddr: Any = None,
                            qent: Any = None) -> Any:
        handlers = ipmi_session.Session.bmc_handlers
        if (qent is not None and data[4] in (0, 2) and qent[2] in handlers
                and struct.unpack("<II", bytes(data[5:13])) == (0, 0)):
            handlers.get(sockaddr, {}).pop(qent[2].getsockname()[1], None)
            handlers[qent[2]][0].sessionless_data(data, sockaddr)
            return None
        return handle(self, data, sockaddr, qent)

    server_session._handle_ipmi_packet = _handle_ipmi_packet


def _control_loop(bmcs: list) -> None:
    for line in sys.stdin:
        message = json.loads(line)
        target = bmcs[message.get("index", 0)]
        if message["op"] == "set":
            _set_fields(target, message)
            _reply({"ok": True})
        elif message["op"] == "get":
            _reply({"power": target.current_power(), "controls": list(target.controls)})
    os._exit(0)


def _set_fields(target: Any, fields: dict[str, Any]) -> None:
    for field in ("power", "lie", "delay", "settle_s", "soft_off_s", "silent_to_strangers"):
        if field in fields:
            setattr(target, field, fields[field])
    if "power" in fields:
        target.pending = None
    if fields.get("forget_sessions"):
        # as a BMC does when it restarts: its sessions are gone, clients must log in again
        from pyghmi.ipmi.private import session as ipmi_session

        for sessions in list(ipmi_session.Session.bmc_handlers.values()):
            if isinstance(sessions, dict):
                sessions.pop(target.port, None)


def _reply(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


# --- Redfish: the sushy-tools emulator ---------------------------------------------------------

class RedfishEmulator:
    """sushy-tools' emulator on 127.0.0.1 with ``systems`` fake systems (power Off), basic
    auth for ``username``/``password`` (bcrypt htpasswd), its own state directory, and HTTPS
    with a self-signed certificate when ``tls``."""

    def __init__(self, workdir: str, systems: int = 1, username: str = "admin",
                 password: str = "password", tls: bool = False) -> None:
        self.dir = workdir
        self.username, self.password, self.tls = username, password, tls
        self.system_ids = [str(uuid.uuid4()) for _ in range(systems)]
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        config = os.path.join(self.dir, "emulator.conf")
        with open(config, "w") as f:
            f.write(self._config())
        argv = [sys.executable, "-m", "tests.power_peers", "redfish", "--config", config,
                "--port", str(self.port)]
        if self.tls:
            cert, key = self_signed_certificate(self.dir)
            argv += ["--ssl-certificate", cert, "--ssl-key", key]
        with open(os.path.join(self.dir, "emulator.log"), "w") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=log)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)

    def power(self, index: int = 0) -> str:
        """The emulated system's PowerState, read over Redfish ("On"/"Off")."""
        return self._get(f"/redfish/v1/Systems/{self.system_ids[index]}").json()["PowerState"]

    def _config(self) -> str:
        import bcrypt

        htpasswd = os.path.join(self.dir, "htpasswd")
        hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
        with open(htpasswd, "w") as f:
            f.write(f"{self.username}:{hashed}\n")
        systems = [{"uuid": sid, "name": f"node{n}", "power_state": "Off",
                    "nics": [{"mac": f"02:00:00:00:00:{n:02x}", "ip": f"10.0.0.{n + 1}"}]}
                   for n, sid in enumerate(self.system_ids)]
        return (f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\n"
                f"SUSHY_EMULATOR_FAKE_DRIVER = True\n"
                f"SUSHY_EMULATOR_STATE_DIR = {os.path.join(self.dir, 'state')!r}\n"
                f"SUSHY_EMULATOR_AUTH_FILE = {htpasswd!r}\n"
                f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n")

    def _get(self, path: str) -> requests.Response:
        session = requests.Session()
        session.trust_env = False
        with warnings.catch_warnings():     # its certificate is self-signed, on purpose
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = session.get(self.url + path, auth=(self.username, self.password),
                                   verify=False, timeout=5)
        response.raise_for_status()
        return response

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sushy-emulator exited; see {self.dir}/emulator.log")
            try:
                self._get("/redfish/v1/")
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"sushy-emulator not ready in 15 s; see {self.dir}/emulator.log")


def _serve_redfish() -> None:
    """Child process: sushy-tools' emulator with power changes landing at once."""
    from sushy_tools.emulator import main
    from sushy_tools.emulator.resources.systems import fakedriver

    fakedriver.random.randint = lambda a, b: 0
    main.main()


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1; returns (cert path, key path)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


if __name__ == "__main__":
    kind = sys.argv.pop(1)
    {"bmc": _serve_bmcs, "redfish": _serve_redfish}[kind]()
