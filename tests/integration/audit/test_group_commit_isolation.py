"""Issue #12, item 1: one request's failure inside a group commit is its own.

Concurrent appends share one transaction (group commit). A value the store cannot
hold used to fail that transaction for every request in it: one workspace's bad
event cost the portal's writes. Now the group is retried request by request.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from audit import AuditLog, Event, EventError, open_log
from tests.harness.audit_service import sample_event
from tests.harness.common import wait_until


def _unholdable() -> Event:
    """An event whose time no store can hold, as if it had slipped past validation
    (what any value the store refuses inside the shared transaction stands for)."""
    ev = sample_event(source="workspace")
    object.__setattr__(ev, "_time_ns", 2**64)  # the forged part: past a signed 64-bit count
    return ev


def test_a_value_the_store_cannot_hold_fails_only_its_own_request(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    log: AuditLog = open_log(f"sqlite:///{db}")
    results: dict[str, object] = {}

    def append(name: str, events: list[Event]) -> None:
        try:
            results[name] = log.append(events)
        except Exception as e:  # noqa: BLE001 - the outcome under test
            results[name] = e

    try:
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the first leader waits here; others queue up
        first = threading.Thread(target=append, args=("first", [sample_event()]))
        first.start()
        wait_until("the first append to lead", lambda: log._leader, 60, interval=0.01)
        bad = threading.Thread(target=append, args=("bad", [_unholdable()]))
        portal = threading.Thread(target=append, args=("portal", [sample_event()]))
        bad.start()
        portal.start()
        wait_until("two appends to queue", lambda: len(log._queue) >= 2, 60, interval=0.01)
        assert len(log._queue) == 2  # the bad and the portal's request: one group
        blocker.execute("ROLLBACK")
        blocker.close()
        for t in (first, bad, portal):
            t.join(timeout=60)
        assert results["first"] == [0]
        assert isinstance(results["bad"], EventError), results["bad"]  # a 422 at intake
        assert results["portal"] == [1], results["portal"]  # not the bad request's failure
        assert log.sequenced() == 2
    finally:
        log.close()


@pytest.mark.parametrize("n", [3])
def test_a_lone_failing_request_still_gets_its_error(tmp_path: Path, n: int) -> None:
    with open_log(f"sqlite:///{tmp_path / 'audit.db'}") as log:
        with pytest.raises(EventError, match="outside what the store can hold"):
            log.append([sample_event() for _ in range(n)] + [_unholdable()])
        assert log.sequenced() == 0  # nothing of the batch
        assert log.append([sample_event()]) == [0]
