"""The agent's state directory: identity, registration record, run status and result outbox.

Layout (all directories 0700, all files 0600)::

    identity/key.pem  identity/cert.pem  identity/ca.pem
    agent.json        written last at registration: its presence means "registered"
    status.json       written by ``run``: connected, since, last_error, pid
    outbox/<id>.json  action results not yet acknowledged by the manager (held in memory
                      while the disk refuses them)

Every write is atomic (temp file, fsync, rename, directory fsync), so a crash or a full disk
leaves the previous file whole. The three identity files are staged together and renamed
only once all of them are safely on disk, so a key is never paired with a stale certificate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from typing import Any

from google.protobuf import json_format

from protos import agent_pb2

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# What registration checks is free before asking for a certificate: the four identity files
# take a block or two each on common filesystems (4 KiB blocks or pages); ample, and small.
IDENTITY_ROOM = 64 * 1024


class StateError(Exception):
    """The state directory cannot be read or written; the message says which file and why."""


@dataclasses.dataclass(frozen=True)
class AgentRecord:
    """What registration established: where the manager is and who this agent is."""

    manager_url: str
    agent_address: str          # "host:port" of the manager's gRPC agent service
    host_id: int
    fqdn: str
    roles: list[str]
    registered_at: str          # ISO 8601, UTC


@dataclasses.dataclass(frozen=True)
class Identity:
    """PEM-encoded key, certificate and pinned manager CA: everything mTLS needs."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


def ensure_private_dir(path: str) -> None:
    """Create ``path`` (0700) if missing and tighten its mode if it exists."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise StateError(f"cannot create directory {path}: {exc.strerror}") from exc


def write_files(files: dict[str, bytes], mode: int = 0o600) -> None:
    """Replace every path in ``files`` or none: all are staged and fsynced before any rename.

    Raises StateError naming the file and the reason (e.g. no space left on device); the
    previous contents are then untouched.
    """
    staged: dict[str, str] = {}
    try:
        for path, data in files.items():
            staged[path] = _stage(path, data, mode)
        for path, tmp in staged.items():
            os.replace(tmp, path)
    except OSError as exc:
        _discard(staged.values())
        raise StateError(f"cannot write {exc.filename or path}: {exc.strerror}; "
                         "the previous contents were kept") from exc
    for directory in {os.path.dirname(p) for p in files}:
        _fsync_dir(directory)


def check_room(directory: str, size: int) -> None:
    """Raise StateError unless a new file of ``size`` bytes fits in ``directory``.

    The bytes are random so that a compressing or deduplicating filesystem really allocates
    them, and synced so that a delayed-allocation one does; the file is removed at once.
    Space can still run out between this check and a later write; it only makes a full disk
    fail before, rather than after, work that cannot be undone.
    """
    try:
        os.unlink(_stage(os.path.join(directory, "room-check"), os.urandom(size), 0o600))
    except OSError as exc:
        raise StateError(f"cannot write {size // 1024} KiB in {directory}: "
                         f"{exc.strerror}") from exc


def _stage(path: str, data: bytes, mode: int) -> str:
    """Write ``data`` to a synced temp file beside ``path``; returns the temp file's name."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        os.unlink(tmp)
        exc.filename = path
        raise
    os.close(fd)
    return tmp


def _discard(paths: Any) -> None:
    for tmp in paths:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc


class StateDir:
    """One agent's state directory; every method touches only files under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.identity_dir = os.path.join(root, "identity")
        self.key_path = os.path.join(self.identity_dir, "key.pem")
        self.cert_path = os.path.join(self.identity_dir, "cert.pem")
        self.ca_path = os.path.join(self.identity_dir, "ca.pem")
        self.record_path = os.path.join(root, "agent.json")
        self.status_path = os.path.join(root, "status.json")
        self.outbox = Outbox(os.path.join(root, "outbox"))

    def is_registered(self) -> bool:
        return os.path.exists(self.record_path) and os.path.exists(self.cert_path)

    def prepare(self) -> None:
        """Create the directories and check there is room for an identity, so a state dir
        that is unwritable or full fails before registering: once the manager has signed a
        certificate it has spent a token credit and taken the FQDN.

        Touches the disk: writes, syncs and removes a temp file of ``IDENTITY_ROOM`` bytes.
        """
        self._make_dirs()
        check_room(self.identity_dir, IDENTITY_ROOM)

    def _make_dirs(self) -> None:
        ensure_private_dir(self.root)
        ensure_private_dir(self.identity_dir)

    def save_registration(self, identity: Identity, record: AgentRecord) -> None:
        """Store a new identity and the record that marks this agent registered, or nothing.

        All four files are staged first; agent.json is renamed into place last.
        """
        self._make_dirs()
        write_files({self.key_path: identity.key_pem, self.cert_path: identity.cert_pem,
                     self.ca_path: identity.ca_pem,
                     self.record_path: _json_bytes(dataclasses.asdict(record))})

    def load_identity(self) -> Identity:
        return Identity(_read(self.key_path), _read(self.cert_path), _read(self.ca_path))

    def load_record(self) -> AgentRecord:
        try:
            return AgentRecord(**json.loads(_read(self.record_path)))
        except (ValueError, TypeError) as exc:
            raise StateError(f"{self.record_path} is damaged: {exc}") from exc

    def write_status(self, status: dict[str, Any]) -> None:
        """Replace status.json; when the disk refuses, remove the old one rather than let it
        claim a connection that may have ended (``status`` then says it is unknown)."""
        try:
            ensure_private_dir(self.root)
            write_files({self.status_path: _json_bytes(status)})
        except StateError:
            with contextlib.suppress(OSError):  # (gone already, or no directory at all)
                os.unlink(self.status_path)
            raise

    def read_status(self) -> dict[str, Any] | None:
        """The last status ``run`` wrote, or None if it never ran (or the file is damaged)."""
        if not os.path.exists(self.status_path):
            return None
        try:
            return json.loads(_read(self.status_path))
        except ValueError:
            return None

    def run_lock_held(self) -> bool:
        """Whether a ``run`` holds this state dir's run lock (is running) now."""
        try:
            fd = os.open(os.path.join(self.root, "run.lock"), os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # (closing also releases a lock taken here)
        return False

    def lock_for_run(self) -> int:
        """Take the run lock (held until the returned fd is closed); one ``run`` per state dir."""
        ensure_private_dir(self.root)
        fd = os.open(os.path.join(self.root, "run.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateError(f"another shepherd-agent run is using {self.root}") from None
        return fd


class Outbox:
    """Action results kept on disk until the manager acknowledges them (at-least-once).

    A result the disk refuses (full, read-only) is held in memory instead, until it is
    acknowledged: a dropped stream then still re-sends it rather than losing it, which
    would make the manager deliver the action again and the agent run it twice. Only a
    restart of the agent forgets a held result.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._ids: set[str] | None = None
        self._held: dict[str, agent_pb2.ActionResult] = {}

    def _path(self, action_id: str) -> str:
        if _SAFE_ID.fullmatch(action_id):
            return os.path.join(self.directory, action_id + ".json")
        digest = hashlib.sha256(action_id.encode()).hexdigest()
        return os.path.join(self.directory, f"sha256-{digest}.json")

    def ids(self) -> set[str]:
        """Ids of the results stored on disk (read once, then kept in step); not the held."""
        if self._ids is None:
            self._ids = {r.action_id for r in self._load_all()}
        return self._ids

    def put(self, result: agent_pb2.ActionResult) -> None:
        """Keep ``result`` until ``delete``; raises StateError (saying why) when the disk
        refused it and it is held in memory only."""
        text = json_format.MessageToJson(result, preserving_proto_field_name=True)
        try:
            ensure_private_dir(self.directory)
            write_files({self._path(result.action_id): text.encode()})
        except StateError:
            self._held[result.action_id] = result
            raise
        self.ids().add(result.action_id)

    def get(self, action_id: str) -> agent_pb2.ActionResult | None:
        if action_id in self._held:
            return self._held[action_id]
        if action_id not in self.ids():
            return None
        return _parse_result(_read(self._path(action_id)))

    def delete(self, action_id: str) -> None:
        self._held.pop(action_id, None)
        if action_id in self.ids():
            try:
                os.unlink(self._path(action_id))
            except FileNotFoundError:
                pass
            self.ids().discard(action_id)

    def all(self) -> list[agent_pb2.ActionResult]:
        ids = sorted(self.ids() | set(self._held))
        return [r for r in (self.get(i) for i in ids) if r is not None]

    def _load_all(self) -> list[agent_pb2.ActionResult]:
        if not os.path.isdir(self.directory):
            return []
        results = []
        for name in sorted(n for n in os.listdir(self.directory) if n.endswith(".json")):
            try:
                results.append(_parse_result(_read(os.path.join(self.directory, name))))
            except StateError as exc:
                log.error("skipping outbox entry %s: %s", name, exc)
        return results


def _parse_result(data: bytes) -> agent_pb2.ActionResult:
    try:
        return json_format.Parse(data, agent_pb2.ActionResult())
    except json_format.ParseError as exc:
        raise StateError(f"damaged outbox entry: {exc}") from exc


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
