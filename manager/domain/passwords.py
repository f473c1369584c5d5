"""Password hashing with scrypt (stdlib), in a self-describing format so parameters can grow.

Format: ``scrypt$N$r$p$salt$hash`` (salt and hash base64). Verification uses the stored
parameters, so raising the cost later keeps old hashes valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

N, R, P = 2**14, 8, 1
_DKLEN = 32


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=_DKLEN)
    return "$".join(("scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)))


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches; a malformed stored hash never matches."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def unusable_hash() -> str:
    """A hash no password matches (for accounts that must not log in with a password)."""
    return "!" + secrets.token_hex(16)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
