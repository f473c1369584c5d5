"""Atomic writes and private directories."""

import os
import stat

import pytest

from manager.files import ensure_private_dir, write_atomic


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory):
    return [p.name for p in directory.iterdir() if p.name.startswith(".tmp-")]


def test_creates_file_with_default_mode(tmp_path):
    path = tmp_path / "secret.key"
    write_atomic(str(path), b"key material")
    assert path.read_bytes() == b"key material"
    assert mode(path) == 0o600


@pytest.mark.parametrize("wanted", [0o644, 0o640, 0o400])
def test_creates_file_with_given_mode(tmp_path, wanted):
    path = tmp_path / "f"
    write_atomic(str(path), b"x", wanted)
    assert mode(path) == wanted


def test_mode_ignores_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomic(str(tmp_path / "f"), b"x", 0o644)
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o644


def test_replaces_existing_content_and_mode(tmp_path):
    path = tmp_path / "cert.pem"
    path.write_bytes(b"old content that is longer than the new one")
    os.chmod(path, 0o666)
    write_atomic(str(path), b"new", 0o644)
    assert path.read_bytes() == b"new"
    assert mode(path) == 0o644


def test_empty_data(tmp_path):
    path = tmp_path / "empty"
    write_atomic(str(path), b"")
    assert path.read_bytes() == b""


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic("relative.txt", b"here")
    assert (tmp_path / "relative.txt").read_bytes() == b"here"
    assert leftovers(tmp_path) == []


def test_leaves_no_temp_files(tmp_path):
    for i in range(3):
        write_atomic(str(tmp_path / "f"), b"v%d" % i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "state"
    write_atomic(str(path), b"old", 0o640)
    with pytest.raises(TypeError):
        write_atomic(str(path), "not bytes", 0o600)
    assert path.read_bytes() == b"old"
    assert mode(path) == 0o640
    assert leftovers(tmp_path) == []


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_atomic(str(tmp_path / "new"), 12345)
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(str(tmp_path / "absent" / "f"), b"x")


def test_ensure_private_dir_creates(tmp_path):
    path = tmp_path / "a" / "b"
    ensure_private_dir(str(path))
    assert path.is_dir()
    assert mode(path) == 0o700


def test_ensure_private_dir_tightens_existing(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    os.chmod(path, 0o755)
    (path / "keep").write_bytes(b"x")
    ensure_private_dir(str(path))
    assert mode(path) == 0o700
    assert (path / "keep").read_bytes() == b"x"


def test_ensure_private_dir_twice(tmp_path):
    ensure_private_dir(str(tmp_path / "d"))
    ensure_private_dir(str(tmp_path / "d"))
    assert mode(tmp_path / "d") == 0o700
