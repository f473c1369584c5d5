"""scrypt password hashes: round trip, salt, format, and malformed hashes that never match."""

import base64
import hashlib
import re

import pytest

from manager.domain import passwords
from manager.domain.passwords import hash_password, unusable_hash, verify_password

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def stored():
    """One hash for the module: each scrypt costs tens of milliseconds."""
    return hash_password(PASSWORD)


def test_round_trip(stored):
    assert verify_password(PASSWORD, stored) is True


@pytest.mark.parametrize("attempt", ["", "correct horse battery stapl", PASSWORD.upper(),
                                     PASSWORD + " ", "\ud800"])
def test_wrong_password(stored, attempt):
    assert verify_password(attempt, stored) is False


def test_non_ascii_password():
    stored = hash_password("pässwörd-日本")
    assert verify_password("pässwörd-日本", stored)
    assert not verify_password("passwort-日本", stored)


def test_same_password_gets_a_new_salt(stored):
    other = hash_password(PASSWORD)
    assert other != stored
    assert other.split("$")[4] != stored.split("$")[4]
    assert verify_password(PASSWORD, other)


def test_format(stored):
    assert re.fullmatch(r"scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", stored)
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", passwords.N, passwords.R, passwords.P)
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(digest)) == 32


def test_stored_parameters_are_used(stored):
    """A hash made with other parameters still verifies: the cost can be raised later."""
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**10, r=4, p=2, dklen=24)
    old = "$".join(["scrypt", "1024", "4", "2", base64.b64encode(salt).decode(),
                    base64.b64encode(digest).decode()])
    assert verify_password(PASSWORD, old)
    assert not verify_password("nope", old)


def tamper(stored, index, value):
    parts = stored.split("$")
    parts[index] = value
    return "$".join(parts)


MALFORMED = {
    "empty": lambda s: "",
    "garbage": lambda s: "garbage",
    "only-separators": lambda s: "$$$$$",
    "extra-field": lambda s: s + "$extra",
    "missing-field": lambda s: s.rsplit("$", 1)[0],
    "other-scheme": lambda s: tamper(s, 0, "bcrypt"),
    "n-not-integer": lambda s: tamper(s, 1, "abc"),
    "n-zero": lambda s: tamper(s, 1, "0"),
    "n-not-power-of-two": lambda s: tamper(s, 1, "3"),
    "n-negative": lambda s: tamper(s, 1, "-16384"),
    "n-huge": lambda s: tamper(s, 1, str(2**40)),
    "r-zero": lambda s: tamper(s, 2, "0"),
    "p-not-integer": lambda s: tamper(s, 3, "x"),
    "salt-not-base64": lambda s: tamper(s, 4, "not base64!"),
    "salt-non-ascii": lambda s: tamper(s, 4, "é"),
    "digest-empty": lambda s: tamper(s, 5, ""),
    "digest-junk": lambda s: tamper(s, 5, "!!!"),
    "digest-bad-padding": lambda s: tamper(s, 5, "abc"),
    "digest-wrong": lambda s: tamper(s, 5, base64.b64encode(b"\0" * 32).decode()),
}


@pytest.mark.parametrize("make", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_hashes_never_match(stored, make):
    assert verify_password(PASSWORD, make(stored)) is False


def test_unusable_hash_never_matches():
    first, second = unusable_hash(), unusable_hash()
    assert first != second
    for attempt in ("", PASSWORD, first, first[1:], "!"):
        assert verify_password(attempt, first) is False
