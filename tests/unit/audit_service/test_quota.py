"""The per-token intake quota, driven by a clock the test moves (no waiting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.service._errors import Backpressure, QuotaExceeded
from audit.service._quota import BodySlots, FreeSpaceFloor, TokenQuotas

from .test_failure_throttle import Clock  # a clock the test moves


def test_a_token_at_its_quota_waits_for_the_refill_and_others_do_not() -> None:
    clock = Clock()
    q = TokenQuotas(events_per_minute=60, bytes_per_minute=10_000, clock=clock)
    q.take(token="ws", events=60, size=100)
    with pytest.raises(QuotaExceeded) as e:
        q.take(token="ws", events=10, size=100)
    assert e.value.reason == "quota_events"
    assert e.value.retry_after == 10  # 10 events at one a second
    q.take(token="portal", events=60, size=100)  # its own bucket
    clock.now += 10
    q.take(token="ws", events=10, size=100)


def test_a_refused_batch_takes_nothing_from_either_bucket() -> None:
    clock = Clock()
    q = TokenQuotas(events_per_minute=100, bytes_per_minute=1000, clock=clock)
    q.take(token="ws", events=1, size=900)
    with pytest.raises(QuotaExceeded) as e:
        q.take(token="ws", events=1, size=900)
    assert e.value.reason == "quota_bytes"
    q.take(token="ws", events=99, size=100)  # the refused batch took no events (or bytes)


def test_a_batch_larger_than_a_minute_overdraws_a_full_bucket_only() -> None:
    clock = Clock()
    q = TokenQuotas(events_per_minute=60, bytes_per_minute=10**9, clock=clock)
    q.take(token="ws", events=120, size=1)  # full: let through, now 60 in debt
    with pytest.raises(QuotaExceeded) as e:
        q.take(token="ws", events=1, size=1)
    assert e.value.retry_after == 61  # the debt, then one event
    clock.now += 120
    q.take(token="ws", events=60, size=1)


def test_a_declared_body_beyond_the_bytes_left_is_refused_before_reading() -> None:
    q = TokenQuotas(events_per_minute=10, bytes_per_minute=1000, clock=Clock())
    q.check_bytes(token="ws", size=1000)
    q.take(token="ws", events=1, size=1000)
    with pytest.raises(QuotaExceeded):
        q.check_bytes(token="ws", size=1)


def test_body_slots_hold_a_share_per_token_and_give_it_back() -> None:
    slots = BodySlots(total=4, per_token=None, retry_after=1)
    slots.acquire("ws")
    with pytest.raises(Backpressure) as e:
        slots.acquire("ws")  # a quarter of four
    assert e.value.reason == "busy"
    for token in ("portal", "hub", "controller"):
        slots.acquire(token)
    with pytest.raises(Backpressure):
        slots.acquire("cli")  # all four held
    slots.release("ws")
    slots.acquire("cli")
    assert slots.busy == 4


def test_an_unreadable_store_directory_counts_as_a_full_disk(tmp_path: Path) -> None:
    floor = FreeSpaceFloor(path=tmp_path / "gone", min_free_bytes=1, retry_after=1)
    with pytest.raises(Backpressure) as e:
        floor.check(source="workspace")
    assert e.value.reason == "disk_low"
    floor.check(source="portal")
    floor.check(source="controller")
    assert FreeSpaceFloor(path=None, min_free_bytes=1, retry_after=1).free_bytes() is None
