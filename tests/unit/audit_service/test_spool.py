"""The client's spool file: order, bounds, persistence, dead letters."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit._spool import Spool


def test_rows_come_back_in_order_and_survive_reopening(tmp_path: Path) -> None:
    s = Spool(path=tmp_path / "s.db", max_events=100)
    assert s.add([(f"id{i}", f"body{i}".encode()) for i in range(10)])
    s.close()
    s = Spool(path=tmp_path / "s.db", max_events=100)
    assert len(s) == 10
    head = s.head(4)
    assert [r.event_id for r in head] == ["id0", "id1", "id2", "id3"]
    s.ack(head[-1].seq)
    assert [r.event_id for r in s.head(100)] == [f"id{i}" for i in range(4, 10)]
    assert len(s) == 6


def test_the_spool_is_bounded(tmp_path: Path) -> None:
    s = Spool(path=tmp_path / "s.db", max_events=5)
    assert s.add([("a", b"1")] * 5)
    assert not s.add([("b", b"2")])
    assert len(s) == 5
    assert s.free() == 0
    with pytest.raises(ValueError, match="at least 1"):
        Spool(path=tmp_path / "t.db", max_events=0)


def test_a_refused_row_moves_to_dead_letters(tmp_path: Path) -> None:
    s = Spool(path=tmp_path / "s.db", max_events=5)
    s.add([("a", b"1"), ("b", b"2"), ("c", b"3")])
    s.bury(s.head(5)[1].seq, reason="field 'actor': must not be empty")
    assert [r.event_id for r in s.head(5)] == ["a", "c"]
    assert s.dead() == [("b", "field 'actor': must not be empty")]
    assert len(s) == 2


def test_the_spool_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    s = Spool(path=tmp_path / "s.db", max_events=5)
    s.add([("a", b"1")])
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
