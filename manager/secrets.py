"""Secrets stored in the database (BMC and PDU passwords), encrypted with a key kept outside it.

A copy of the database — a backup, a dump attached to a bug report — then holds no usable
password. The key is ``STATE/secret.key`` (mode 0600), made on first start. Managers sharing
one PostgreSQL must share this file: copy it to each state directory before their first
start. The file may hold several keys, one per line: the first encrypts, any decrypts
(rotate by putting a new key first; values are re-encrypted as they are written again).

The manager installs its box at start (``install``); domain code on database threads that
has no handle on the manager (the engine's steps) reaches it through ``current()``, as models
reach the database through the one bound proxy.
"""

from __future__ import annotations

import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from manager.files import write_atomic

KEY_FILE = "secret.key"


class SecretUnreadable(Exception):
    """A stored secret that none of the keys decrypts (the key file was replaced?)."""


class SecretBox:
    """Encrypts and decrypts text with Fernet (AES-128-CBC and HMAC-SHA256, timestamped)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, text: str) -> str:
        """A token for ``text``; the empty string stays empty (no secret set)."""
        return self._fernet.encrypt(text.encode()).decode("ascii") if text else ""

    def decrypt(self, token: str) -> str:
        if not token:
            return ""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretUnreadable("a stored secret cannot be decrypted with this manager's "
                                   f"{KEY_FILE}; enter the password again") from None


def load(state_dir: str) -> SecretBox:
    """The box for ``state_dir``'s key file, created (0600) with a new key if missing."""
    path = os.path.join(state_dir, KEY_FILE)
    try:
        with open(path, "rb") as f:
            keys = [line.strip() for line in f if line.strip()]
        os.chmod(path, 0o600)  # a key file copied in with a looser mode is tightened
    except FileNotFoundError:
        keys = [Fernet.generate_key()]
        write_atomic(path, keys[0] + b"\n", 0o600)
    try:
        return SecretBox(keys)
    except ValueError as exc:
        raise ValueError(f"{path}: not a key file ({exc})") from None


_installed: SecretBox | None = None


def install(box: SecretBox) -> None:
    global _installed
    _installed = box


def current() -> SecretBox:
    if _installed is None:
        raise RuntimeError("no secret box installed (the manager installs it at start)")
    return _installed
