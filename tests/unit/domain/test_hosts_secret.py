"""Registration token secrets: their length and alphabet, and no character favoured."""

from __future__ import annotations

import collections

from manager.domain import hosts


def test_secrets_have_the_length_and_alphabet():
    seen = {hosts.new_secret() for _ in range(2000)}
    assert len(seen) == 2000
    assert all(len(s) == hosts.SECRET_LENGTH and set(s) <= set(hosts.SECRET_ALPHABET)
               for s in seen)


def test_every_character_is_about_as_likely():
    counts = collections.Counter("".join(hosts.new_secret() for _ in range(20_000)))
    expected = 20_000 * hosts.SECRET_LENGTH / len(hosts.SECRET_ALPHABET)  # ~5,161 each
    assert set(counts) == set(hosts.SECRET_ALPHABET)
    # a byte taken modulo 62 without redrawing would give the first 8 characters 5/4 of
    # the others' share; sampling noise is about ±72 (1 sigma)
    assert max(counts.values()) < expected * 1.08 and min(counts.values()) > expected * 0.92
