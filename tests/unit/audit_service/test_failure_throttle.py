"""The per-address failure throttle of the officer login and bearer checks."""

from __future__ import annotations

import pytest

from audit.service._officer import FailureThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_locks_the_address_after_max_failures_within_the_window() -> None:
    clock = Clock()
    t = FailureThrottle(max_failures=3, window=60, clock=clock)
    assert [t.note_failure("192.0.2.1") for _ in range(3)] == [False, False, True]
    assert t.locked_for("192.0.2.1") == pytest.approx(60)
    assert t.locked_for("192.0.2.2") == 0
    clock.now += 59
    assert t.locked_for("192.0.2.1") == pytest.approx(1)
    clock.now += 1
    assert t.locked_for("192.0.2.1") == 0


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    t = FailureThrottle(max_failures=3, window=60, clock=clock)
    t.note_failure("192.0.2.1")
    t.note_failure("192.0.2.1")
    clock.now += 61
    assert t.note_failure("192.0.2.1") is False
    assert t.locked_for("192.0.2.1") == 0


def test_many_addresses_share_one_overflow_bucket_and_known_ones_stay_apart() -> None:
    clock = Clock()
    t = FailureThrottle(max_failures=2, window=60, max_clients=4, clock=clock)
    t.note_failure("198.51.100.1")  # a known address, one failure
    for i in range(20):  # a flood from many addresses
        t.note_failure(f"203.0.113.{i}")
    assert t.locked_for("203.0.113.200") > 0  # new addresses land in the locked overflow
    assert t.locked_for("198.51.100.1") == 0  # the known one is not locked by the flood
    tracked = set(t._failures) | set(t._locked_until)
    assert len(tracked) <= 4 + 1  # bounded: the addresses, plus the overflow bucket


def test_idle_addresses_are_dropped_to_make_room() -> None:
    clock = Clock()
    t = FailureThrottle(max_failures=5, window=60, max_clients=2, clock=clock)
    t.note_failure("192.0.2.1")
    t.note_failure("192.0.2.2")
    clock.now += 61
    t.note_failure("192.0.2.3")  # the two idle ones expire; this one gets its own bucket
    assert set(t._failures) == {"192.0.2.3"}


def test_rejects_a_nonsense_configuration() -> None:
    with pytest.raises(ValueError, match="max_failures"):
        FailureThrottle(max_failures=0, window=60)
