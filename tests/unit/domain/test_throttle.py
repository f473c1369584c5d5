"""Failed-login throttling by name and by address, with a fake clock."""

import pytest

from manager.domain.throttle import WINDOW, LoginThrottle, Throttled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(per_user=3, per_address=10, lockout=10.0):
    clock = Clock()
    return LoginThrottle(per_user, per_address, lockout, clock), clock


def test_a_name_is_locked_after_its_limit_and_the_lock_doubles():
    throttle, clock = make()
    for _ in range(2):
        throttle.failed("alice", "10.0.0.1")
    throttle.check("alice", "10.0.0.1")  # two failures: still free
    throttle.failed("alice", "10.0.0.2")
    with pytest.raises(Throttled) as err:
        throttle.check("alice", "10.0.0.9")  # locked whatever the address
    assert err.value.retry_after == pytest.approx(10.0)
    clock.now += 10.5
    throttle.check("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    with pytest.raises(Throttled) as err:
        throttle.check("alice", "10.0.0.1")
    assert err.value.retry_after == pytest.approx(20.0)  # one more failure: twice as long
    throttle.check("bob", "10.0.0.3")  # other names are not affected


def test_an_address_is_locked_after_its_limit_whatever_names_it_tries():
    throttle, _ = make(per_user=100, per_address=4)
    for name in ("a", "b", "c", "d"):
        throttle.failed(name, "203.0.113.5")
    with pytest.raises(Throttled):
        throttle.check("e", "203.0.113.5")
    throttle.check("e", "203.0.113.6")


def test_success_clears_the_names_failures_and_old_failures_expire():
    throttle, clock = make()
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    throttle.succeeded("alice")
    throttle.failed("alice", "10.0.0.1")
    throttle.check("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    throttle.failed("alice", "10.0.0.1")
    clock.now += WINDOW + 1
    throttle.check("alice", "10.0.0.1")


def test_the_lock_never_exceeds_the_window():
    throttle, _ = make(per_user=1, lockout=60.0)
    for _ in range(30):
        throttle.failed("alice", "10.0.0.1")
    with pytest.raises(Throttled) as err:
        throttle.check("alice", "10.0.0.1")
    assert err.value.retry_after <= WINDOW
