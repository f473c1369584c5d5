"""Reconnect delays: exponential backoff with full jitter.

After a manager restart thousands of agents reconnect at once; TLS handshakes then saturate
the manager (see reference/grpc-scale.md: uncapped, 40 % of 10k connects failed). Full jitter
(a uniform delay between 0 and the current cap) spreads those reconnects out evenly.
"""

from __future__ import annotations

import random


class Backoff:
    """Delay before the next attempt: uniform in [0, min(maximum, minimum * 2**failures)]."""

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self._rng = rng or random.Random()  # jitter, not cryptography
        self._failures = 0

    def cap(self) -> float:
        """The current upper bound of the delay."""
        return min(self.maximum, self.minimum * 2 ** min(self._failures, 64))

    def next_delay(self) -> float:
        """A jittered delay for the next attempt; each call doubles the cap."""
        delay = self._rng.uniform(0, self.cap())
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Start again from ``minimum`` (after a connection that stayed up long enough)."""
        self._failures = 0
