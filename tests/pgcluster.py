"""A throwaway PostgreSQL server for tests and benchmarks.

Shepherd keeps its state in PostgreSQL, and the behaviour that matters (locking,
connection pools, reconnects after an outage) can't be tested against SQLite or a
mock. This module starts a real, private server from the machine's own binaries
(the Debian ``postgresql`` package), in a temp dir and on a free port, so the tests
need no shared database and can stop and restart the server at will.

    python -m tests.pgcluster    # start one, print its URL, destroy it on Ctrl-C/SIGTERM
"""

import atexit
import glob
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
from typing import Any, Self

import psycopg2
from psycopg2 import sql


def find_bin_dir() -> str:
    """Return the newest ``/usr/lib/postgresql/<version>/bin`` that holds the server."""
    dirs = [d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(os.path.join(d, "pg_ctl"), os.X_OK)]
    if dirs:  # newest major version first: /usr/lib/postgresql/15/bin
        return max(dirs, key=lambda d: tuple(int(p) for p in d.split(os.sep)[-2].split(".") if p.isdigit()))
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and os.path.exists(os.path.join(os.path.dirname(pg_ctl), "initdb")):
        return os.path.dirname(pg_ctl)
    raise RuntimeError("no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); "
                       "install them with: apt-get install postgresql")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """A private PostgreSQL server in a temp dir, reachable as ``postgres`` without a password."""

    def __init__(self, base_dir: str | None = None, port: int | None = None, max_connections: int = 200) -> None:
        self.bin_dir = find_bin_dir()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.max_connections = max_connections
        self.dir = tempfile.mkdtemp(prefix="shepherd-pg-", dir=base_dir)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "log")
        self._as_postgres = os.geteuid() == 0  # the server refuses to run as root
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        atexit.register(self.destroy)

    @property
    def url(self) -> str:
        """URL of the ``postgres`` maintenance database."""
        return self.db_url("postgres")

    def db_url(self, name: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{name}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bin_dir, args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, check=False)

    def _fail(self, what: str, proc: subprocess.CompletedProcess[str]) -> RuntimeError:
        try:
            with open(self.log_path, errors="replace") as f:
                tail = "".join(f.readlines()[-30:])
        except OSError:
            tail = "(no server log)"
        return RuntimeError(f"{what} failed (exit {proc.returncode}) in {self.dir}:\n"
                            f"{proc.stdout}{proc.stderr}\n--- server log tail ---\n{tail}")

    def running(self) -> bool:
        return os.path.exists(self.data_dir) and self._run("pg_ctl", "-D", self.data_dir, "status").returncode == 0

    def start(self) -> None:
        """Create the cluster on first start, then start the server and wait until it accepts connections."""
        if not os.path.exists(os.path.join(self.data_dir, "PG_VERSION")):
            proc = self._run("initdb", "-D", self.data_dir, "-U", "postgres", "-A", "trust",
                             "-E", "UTF8", "--locale=C", "--no-sync")
            if proc.returncode != 0:
                raise self._fail("initdb", proc)
        if self.running():
            return
        for attempt in range(3):
            opts = (f"-c listen_addresses={self.host} -p {self.port} -k {shlex.quote(self.dir)} "
                    f"-c fsync=off -c max_connections={self.max_connections}")
            proc = self._run("pg_ctl", "-D", self.data_dir, "-l", self.log_path, "-w", "-t", "60", "-o", opts, "start")
            if proc.returncode == 0:
                return
            with open(self.log_path, errors="replace") as f:
                port_taken = "could not bind" in f.read()
            if self._fixed_port or not port_taken or attempt == 2:
                raise self._fail("pg_ctl start", proc)
            self.port = free_port()  # someone took our port between picking and binding

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``smart``, ``fast`` or ``immediate``); the data is kept for a later start()."""
        if self.running():
            proc = self._run("pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "-t", "60", "stop")
            if proc.returncode != 0:
                raise self._fail("pg_ctl stop", proc)

    def destroy(self) -> None:
        """Stop the server if it runs and remove the whole temp dir."""
        if os.path.isdir(self.dir):
            self.stop("immediate")
            shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.destroy)

    def _execute(self, query: sql.Composable, params: tuple[object, ...] = ()) -> None:
        conn = psycopg2.connect(self.url, connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(query, params)
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.db_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` (if it exists), first disconnecting everyone still using it."""
        self._execute(sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()"), (name,))
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def fresh_database(self, name: str) -> str:
        """Database ``name`` dropped (if a previous test left it) and created empty; its URL."""
        self.drop_database(name)
        return self.create_database(name)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """Start a server, print its URL and keep it until Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, _interrupt)
    pg = ThrowawayPostgres()
    try:
        pg.start()
        print(pg.url, flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()


def database_url(request: Any, directory: str, name: str) -> str:
    """A new, empty database for a fixture parametrised over ``sqlite`` and ``postgresql``:
    a file in ``directory``, or database ``name`` on the session's throwaway server."""
    if request.param == "sqlite":
        return f"sqlite:///{directory}/{name}.db"
    return request.getfixturevalue("pg_server").fresh_database(name)
