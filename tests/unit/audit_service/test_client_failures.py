"""The audit client under the failures a security review found it mishandled.

Named after the failure each simulates: a spool shared by two processes, a spool
that raises once under the sender, and a store that refuses one append.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from audit import Query, open_log
from audit._spool import Spool
from audit.client import AuditClient, RecordNotDurable
from audit.errors import AuditError
from tests.harness.audit_service import sample_event


def test_two_processes_sharing_one_spool_keep_one_true_count(tmp_path: Path):
    # Two Spool objects on one file behave as two portal workers do.
    a = Spool(path=tmp_path / "spool.db", max_events=5)
    b = Spool(path=tmp_path / "spool.db", max_events=5)
    try:
        assert b.add([(f"e{i}", b"{}") for i in range(3)])
        a.ack(a.head(10)[-1].seq)  # worker A's sender drains B's rows
        assert len(a) == len(b) == 0
        assert a.add([(f"f{i}", b"{}") for i in range(5)])
        # the bound holds across both: the file is full for B too
        assert not b.add([("g", b"{}")])
        assert len(b) == 5
        assert b.free() == 0
    finally:
        a.close()
        b.close()


class SpoolThatFailsOnce(Spool):
    """head() raises one OperationalError, as a disk or lock error would."""

    failed = False

    def head(self, limit: int):  # type: ignore[no-untyped-def]
        if not SpoolThatFailsOnce.failed:
            SpoolThatFailsOnce.failed = True
            raise sqlite3.OperationalError("disk I/O error")
        return super().head(limit)


def test_the_sender_survives_a_spool_error_and_reports_it(tmp_path: Path, monkeypatch):
    import audit.client as client_module

    monkeypatch.setattr(client_module, "Spool", SpoolThatFailsOnce)
    client = AuditClient.http(
        url="http://127.0.0.1:9", token="t", spool_path=tmp_path / "s.db", max_backoff=0.1
    )
    try:
        client.record(sample_event())
        deadline = time.monotonic() + 10
        # after the injected error the sender goes on: it reaches the (absent) service
        while "unreachable" not in (client.last_error or ""):
            assert time.monotonic() < deadline, client.last_error
            time.sleep(0.05)  # poll interval; the deadline bounds the wait
        assert SpoolThatFailsOnce.failed
        assert client.pending() == 1
    finally:
        client.close(flush_timeout=0)


def test_a_failed_local_append_keeps_the_queued_events(tmp_path: Path, monkeypatch):
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    client = AuditClient.local(store_url=store)
    log = client._log  # type: ignore[attr-defined]
    real_append = log.append
    calls = {"n": 0}

    def append_failing_once(events):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise AuditError("the store is busy")
        return real_append(events)

    monkeypatch.setattr(log, "append", append_failing_once)
    first, second = sample_event(), sample_event()
    recorded = True
    try:
        client.emit(first)
        try:
            client.record(second)
        except RecordNotDurable:
            recorded = False  # the record shared the failing batch: refused to its caller
        assert client.flush(timeout=10), client.last_error
        assert calls["n"] >= 2  # the failure happened, on one path or the other
    finally:
        client.close()
    check = open_log(store)
    try:
        ids = [e.event.id for e in check.query(Query(), limit=10)[0]]
    finally:
        check.close()
    assert first.id in ids  # taken by emit: never dropped by the failing append
    assert (second.id in ids) is recorded
