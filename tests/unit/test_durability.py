"""What survives a power cut or a full disk: SQLite's journal settings, the order of a file's
fsyncs and rename, and the manager's keys (issue 14, durability).

A crash is simulated by failing a write part-way, then starting again on what was left.
"""

from __future__ import annotations

import errno
import os
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from manager import files, secrets
from manager.db.base import open_database
from manager.pki import CertificateAuthority


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory) -> list[str]:
    return [n for _, _, names in os.walk(directory) for n in names if n.startswith(".tmp-")]


# --- SQLite --------------------------------------------------------------------------------

def pragmas(database) -> dict[str, object]:
    return {name: database.execute_sql(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "foreign_keys")}


def test_sqlite_runs_in_wal_with_full_sync_on_every_connection(tmp_path):
    """synchronous=FULL (2) syncs the WAL at each commit: NORMAL may lose the last commits
    on power loss. Pragmas are per connection, and each DB thread opens its own."""
    database = open_database(f"sqlite:///{tmp_path}/state/shepherd.db")
    found = [pragmas(database)]
    database.close()
    worker = threading.Thread(target=lambda: found.append(pragmas(database)))
    worker.start()
    worker.join(10)
    expected = {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
    assert found == [expected, expected]
    assert (tmp_path / "state" / "shepherd.db-wal").exists()


# --- atomic files --------------------------------------------------------------------------

def test_write_atomic_syncs_the_data_before_the_rename_and_the_directory_after(tmp_path,
                                                                              monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)
    monkeypatch.setattr(files.os, "fsync", fsync)
    monkeypatch.setattr(files.os, "replace", replace)
    files.write_atomic(str(tmp_path / "ca.key"), b"key")
    assert events == ["fsync file", "rename", "fsync dir"]


def full_disk(monkeypatch, after: int = 0) -> None:
    """``write_atomic`` succeeds ``after`` times, then the disk is full (at the data's fsync,
    where a real ENOSPC on delayed allocation shows)."""
    calls = {"n": 0}
    real_fsync = os.fsync

    def fsync(fd):
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            calls["n"] += 1
            if calls["n"] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)


# --- the secret key ------------------------------------------------------------------------

def test_secret_key_is_0600_and_a_copied_in_key_is_tightened(tmp_path):
    secrets.load(str(tmp_path))
    path = tmp_path / secrets.KEY_FILE
    assert mode(path) == 0o600
    os.chmod(path, 0o644)
    secrets.load(str(tmp_path))
    assert mode(path) == 0o600


def test_a_full_disk_leaves_no_partial_secret_key(tmp_path, monkeypatch):
    full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        secrets.load(str(tmp_path))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []  # no empty key file for the next start to trust
    box = secrets.load(str(tmp_path))
    assert secrets.load(str(tmp_path)).decrypt(box.encrypt("s3cret")) == "s3cret"


# --- the CA and the server pair ------------------------------------------------------------

def key_matches(key_path: str, cert_path: str) -> bool:
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return key.public_key() == cert.public_key()


@pytest.mark.parametrize("after", [0, 1])
def test_a_full_disk_while_creating_the_ca_leaves_nothing_half_made(tmp_path, monkeypatch,
                                                                    after):
    full_disk(monkeypatch, after)
    with pytest.raises(OSError, match="No space left"):
        CertificateAuthority(str(tmp_path))
    monkeypatch.undo()
    assert leftovers(tmp_path) == []
    ca = CertificateAuthority(str(tmp_path))
    assert key_matches(ca.ca_key_path, ca.ca_cert_path)
    assert mode(ca.dir) == 0o700 and mode(ca.ca_key_path) == 0o600


def test_a_crash_between_the_server_key_and_its_certificate_is_repaired(tmp_path,
                                                                        monkeypatch):
    """Reissuing (a new name, or renewal) writes the key, then the certificate: a crash in
    between leaves a new key beside the old certificate, which TLS cannot load."""
    ca = CertificateAuthority(str(tmp_path))
    ca.ensure_server_certificate(["mgr.example"])
    full_disk(monkeypatch, after=1)
    with pytest.raises(OSError, match="No space left"):
        ca.ensure_server_certificate(["mgr.example", "new.example"])
    monkeypatch.undo()
    assert not key_matches(ca.server_key_path, ca.server_cert_path)  # the state a crash leaves
    again = CertificateAuthority(str(tmp_path))
    again.ensure_server_certificate(["mgr.example"])
    assert key_matches(again.server_key_path, again.server_cert_path)
    again.server_ssl_context()  # loads: the manager can start
    assert mode(again.server_key_path) == 0o600 and leftovers(tmp_path) == []


def test_state_files_of_the_ca_have_private_modes(tmp_path):
    ca = CertificateAuthority(str(tmp_path))
    ca.ensure_server_certificate([])
    assert {name: mode(os.path.join(ca.dir, name)) for name in sorted(os.listdir(ca.dir))} == {
        "ca.crt": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}
    assert mode(ca.dir) == 0o700
