"""audit.sqlite.enable_wal against SQLite's immediate "database is locked"."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from audit.sqlite import enable_wal


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE filler (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO filler VALUES (1)")
    return holder


def test_waits_until_the_other_writer_commits(tmp_path: Path) -> None:
    holder = _hold_write_lock(tmp_path / "db")
    release = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    release.start()
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        enable_wal(conn, timeout=10)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        release.join()
        conn.close()
        holder.close()


def test_gives_up_after_the_timeout_with_sqlites_error(tmp_path: Path) -> None:
    holder = _hold_write_lock(tmp_path / "db")
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enable_wal(conn, timeout=0.2)
    finally:
        conn.close()
        holder.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        enable_wal(conn, timeout=10)
