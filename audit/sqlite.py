"""Opening SQLite files that several processes share (audit store, spool, identity store).

Switching a database to WAL needs an exclusive lock, and SQLite answers "database is
locked" at once, without calling its busy handler, when another process is in the
middle of a write in rollback mode at that moment, which is exactly what a second
process sees while the first one is converting a fresh file to WAL. Every opener goes
through :func:`enable_wal`, which waits that out the way every other statement waits.
"""

from __future__ import annotations

import sqlite3
import time

BUSY_TIMEOUT_S = 30.0


def enable_wal(conn: sqlite3.Connection, *, timeout: float = BUSY_TIMEOUT_S) -> None:
    """Put ``conn``'s database in WAL mode, retrying while another process holds it.

    Raises :class:`sqlite3.OperationalError` when the lock is still held after
    ``timeout`` seconds, or when the file cannot be in WAL mode (e.g. ``:memory:`` is
    accepted as it is)."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            continue
        if mode not in ("wal", "memory"):
            raise sqlite3.OperationalError(f"journal mode stays {mode!r}; WAL is required")
        return
