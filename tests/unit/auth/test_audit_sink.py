"""The portal's local audit sink: durable JSON lines, group commit, fail closed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from auth._audit import Auditor, FileAuditSink
from auth._errors import AuditUnavailableError


def test_concurrent_events_all_land_once(tmp_path: Path) -> None:
    a = Auditor(sink=FileAuditSink(path=tmp_path / "a.jsonl"))

    def work(i: int) -> None:
        for j in range(50):
            a.record(
                action="auth.factor.verified",
                actor=f"u{i}",
                outcome="success",
                details={"factor": "totp", "credential": f"c{j}"},
            )

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert len(lines) == 400
    events = [json.loads(x) for x in lines]
    assert len({e["id"] for e in events}) == 400
    assert all(e["source"] == "portal" for e in events)
    assert lines[0] == json.dumps(
        events[0], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )


def test_unwritable_log_fails_closed(tmp_path: Path) -> None:
    a = Auditor(sink=FileAuditSink(path=tmp_path / "missing-dir" / "a.jsonl"))
    with pytest.raises(AuditUnavailableError, match="refuses to continue"):
        a.record(action="session.started", actor="x", outcome="success")


def test_secrets_are_refused_in_details(tmp_path: Path) -> None:
    a = Auditor(sink=FileAuditSink(path=tmp_path / "a.jsonl"))
    with pytest.raises(ValueError, match="must not carry secrets"):
        a.record(action="x", actor="y", outcome="success", details={"password": "hunter2"})
    assert not (tmp_path / "a.jsonl").exists()


def test_control_characters_in_a_request_path_are_recorded_visibly(tmp_path: Path) -> None:
    # Found by schemathesis: POST /enclaves/%1F/totp made the portal's own refusal
    # event unrecordable (intake refuses invisible characters), so the request got a 500.
    a = Auditor(sink=FileAuditSink(path=tmp_path / "a.jsonl"))
    a.record(
        action="web.request.rejected",
        actor="(anonymous)",
        outcome="failure",
        details={"path": "/enclaves/\x1f\u202e/totp", "reason": "x"},
    )
    a.record(
        action="web.request.rejected",
        actor="(anonymous)",
        outcome="failure",
        details={"path": "/" + "\x1f" * 200, "reason": "x"},
    )
    first, second = (json.loads(x) for x in (tmp_path / "a.jsonl").read_text().splitlines())
    assert first["details"]["path"] == "/enclaves/\\u001f\\u202e/totp"
    assert len(second["details"]["path"]) == 256
    assert second["details"]["path"].endswith("…")
