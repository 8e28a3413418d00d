"""The client's durable spool: a SQLite file of events not yet acknowledged.

Rows are kept in arrival order (``seq``) and removed only after the audit service
acknowledged them, so the spool survives the service being down and the client
process restarting. Durability: WAL journal with ``synchronous=FULL``, so a committed
row survives power loss on a disk that honours fsync. The spool is bounded by a row
count; callers see back-pressure instead of the file growing without limit.

Rows the service refused permanently (an event it can never accept) move to a
``dead`` table with the reason, so one bad row cannot block everything behind it
and nothing is silently dropped.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .sqlite import BUSY_TIMEOUT_S, enable_wal

__all__ = ["Spool", "SpoolRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  body BLOB NOT NULL,
  queued REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  body BLOB NOT NULL,
  queued REAL NOT NULL,
  failed REAL NOT NULL,
  reason TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class SpoolRow:
    seq: int
    event_id: str
    body: bytes


class Spool:
    """Thread-safe access to one spool file (one connection, one lock).

    Several processes may share one spool file (``portal serve --workers N``): the
    row count is always read from the file inside the writing transaction, never
    kept in memory, so the bound holds across processes. Two senders may then send
    the same rows; the service ignores event ids it already holds (exactly once).
    """

    def __init__(self, *, path: Path, max_events: int) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = Path(path)
        self.max_events = max_events
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # events hold personal data: the spool (and its -wal/-shm, which SQLite creates
        # with the database's mode) is readable by its owner only
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        enable_wal(self._db)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _rows(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def __len__(self) -> int:
        with self._lock:
            return self._rows()

    def free(self) -> int:
        return self.max_events - len(self)

    def add(self, rows: Sequence[tuple[str, bytes]]) -> bool:
        """Append ``(event_id, body)`` rows in one transaction; False when over capacity."""
        if not rows:
            return True
        with self._lock:
            now = time.time()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._rows() + len(rows) > self.max_events:
                    self._db.execute("ROLLBACK")
                    return False
                self._db.executemany(
                    "INSERT INTO spool (event_id, body, queued) VALUES (?, ?, ?)",
                    [(eid, body, now) for eid, body in rows],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return True

    def head(self, limit: int) -> list[SpoolRow]:
        """The oldest ``limit`` rows, in order."""
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, event_id, body FROM spool ORDER BY seq LIMIT ?", (limit,)
            )
            return [SpoolRow(seq=s, event_id=e, body=bytes(b)) for s, e, b in cur.fetchall()]

    def ack(self, upto_seq: int) -> None:
        """Remove every row up to and including ``upto_seq`` (acknowledged by the service)."""
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE seq <= ?", (upto_seq,))

    def bury(self, seq: int, *, reason: str) -> None:
        """Move one permanently refused row to ``dead``, keeping it for an operator."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO dead (seq, event_id, body, queued, failed, reason) "
                    "SELECT seq, event_id, body, queued, ?, ? FROM spool WHERE seq = ?",
                    (time.time(), reason[:1000], seq),
                )
                self._db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def dead(self) -> list[tuple[str, str]]:
        """``(event_id, reason)`` of every refused row."""
        with self._lock:
            return [
                (e, r)
                for e, r in self._db.execute("SELECT event_id, reason FROM dead ORDER BY seq")
            ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
