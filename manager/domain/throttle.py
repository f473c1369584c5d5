"""Throttling repeated failed logins, per user name and per client address.

After ``per_user`` failures within the window a name is locked out for ``lockout`` seconds,
doubling with each further failure (at most the window), even for the right password — a
guesser learns nothing while locked out. An address gets the same after ``per_address``
failures, whatever names it tries. A success clears the name's failures. Counters live in
this process (several managers each apply the limits).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable

WINDOW = 900.0


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Too many failed logins; try again in {int(retry_after) + 1} s.")
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(self, per_user: int, per_address: int, lockout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = {"user": per_user, "address": per_address}
        self.lockout = lockout
        self.clock = clock
        self._failures: dict[tuple[str, str], collections.deque[float]] = {}

    def check(self, username: str, address: str) -> None:
        """Raise Throttled while the name or the address is locked out."""
        wait = max(self._locked_for("user", username), self._locked_for("address", address))
        if wait > 0:
            raise Throttled(wait)

    def failed(self, username: str, address: str) -> None:
        now = self.clock()
        for kind, key in (("user", username), ("address", address)):
            times = self._failures.setdefault((kind, key), collections.deque())
            times.append(now)
            self._expire(times, now)
        if len(self._failures) > 100_000:  # a flood of names: forget the stale ones
            self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < WINDOW}

    def succeeded(self, username: str) -> None:
        self._failures.pop(("user", username), None)

    def clear(self) -> None:
        self._failures.clear()

    def _locked_for(self, kind: str, key: str) -> float:
        times = self._failures.get((kind, key))
        if not times:
            return 0.0
        now = self.clock()
        self._expire(times, now)
        excess = len(times) - self.limits[kind]
        if excess < 0:
            return 0.0
        duration = min(self.lockout * 2 ** excess, WINDOW)
        return times[-1] + duration - now

    @staticmethod
    def _expire(times: collections.deque[float], now: float) -> None:
        while times and now - times[0] > WINDOW:
            times.popleft()
