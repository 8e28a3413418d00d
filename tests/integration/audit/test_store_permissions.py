"""The SQLite audit store holds personal data: readable by its owner only (issue #12, 7)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit import Event, open_log


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _one_event() -> Event:
    return Event.new(
        source="cli",
        actor="ops",
        action="auth.logout",
        outcome="success",
        details={},
    )


def test_a_world_readable_store_under_umask_022_is_not_created(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "audit.db"
    with open_log(f"sqlite:///{db}") as log:
        log.append([_one_event()])
        files = [db, db.with_name("audit.db-wal"), db.with_name("audit.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}


def test_a_store_left_world_readable_by_an_older_version_is_tightened_when_opened(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "audit.db"
    with open_log(f"sqlite:///{db}") as log:
        log.append([_one_event()])
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    with open_log(f"sqlite:///{db}") as log:
        log.append([_one_event()])
        for name in ("audit.db", "audit.db-wal", "audit.db-shm"):
            f = tmp_path / name
            if f.exists():
                assert _mode(f) == 0o600, name
