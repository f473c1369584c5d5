"""Reconnect backoff: full jitter, doubling caps, reset."""

import random

from agent.backoff import Backoff


def test_delays_stay_within_doubling_caps():
    backoff = Backoff(1.0, 60.0, random.Random(1))
    for cap in (1, 2, 4, 8, 16, 32, 60, 60, 60):
        assert backoff.cap() == cap
        assert 0 <= backoff.next_delay() <= cap


def test_jitter_spreads_delays_over_the_whole_range():
    delays = [Backoff(1.0, 60.0, random.Random(seed)).next_delay() for seed in range(500)]
    assert min(delays) < 0.05
    assert max(delays) > 0.95
    assert 0.4 < sum(delays) / len(delays) < 0.6


def test_reset_starts_again_from_the_minimum():
    backoff = Backoff(1.0, 60.0, random.Random(2))
    for _ in range(10):
        backoff.next_delay()
    assert backoff.cap() == 60
    backoff.reset()
    assert backoff.cap() == 1


def test_many_failures_do_not_overflow():
    backoff = Backoff(1.0, 60.0, random.Random(3))
    for _ in range(5000):
        assert backoff.next_delay() <= 60
