"""Issue #12, item 8: refusing invisible characters at intake leaves stored leaves valid.

Entries written before intake refused U+202E, U+2028 and the like keep parsing and
verifying, on both stores and both verify paths; only new events are refused.
"""

from __future__ import annotations

import pytest

from audit import AuditLog, EventError, verify_store
from audit._events import parse_event, visible_text
from tests.harness.audit_service import sample_event

_SPOOF = "admin@hospital.example\u202etxt.exe"


def test_entries_stored_before_the_check_keep_verifying(log: AuditLog, verify_path: str) -> None:
    stored = sample_event(actor=_SPOOF, details={"factor": "totp", "reason": "a\u2028b\x85"})
    log.append([stored, sample_event()])
    log.integrate()
    report = verify_store(log.store)
    assert report.ok, report
    assert log.stored_event(0).event.actor == _SPOOF  # kept exactly as received
    with pytest.raises(EventError, match="U\\+202E"):
        parse_event(stored.to_dict())  # but refused as a new event


def test_visible_text_escapes_only_what_would_hide() -> None:
    assert visible_text(_SPOOF) == "admin@hospital.example\\u202etxt.exe"
    assert visible_text("a\u2028b\u200bc\x85") == "a\\u2028b\\u200bc\\u0085"
    assert visible_text("r.tanaka 田中 ü") == "r.tanaka 田中 ü"
