"""What many tests need and none should write again: a clock that moves only when a
test says so, polling for a condition with a deadline, a free local port, and
tampering with an audit store the way an intruder with the owner's rights would.

Tests never depend on timing: :func:`wait_until` polls a condition and fails with
what it waited for once its deadline (which only catches a hang) passes.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import psycopg

__all__ = ["FakeClock", "free_port", "tamper_postgres", "tamper_sqlite", "wait_until"]

T = TypeVar("T")
Statement = str | tuple[str, Sequence[object]]
"""SQL with no parameters, or SQL and its parameters."""


class FakeClock:
    """Time that moves only when a test says so (seconds since the epoch)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(
    what: str,
    condition: Callable[[], T],
    timeout: float = 60.0,
    *,
    interval: float = 0.05,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition()`` until it returns something truthy, and return that.

    Exceptions of the ``ignore`` types count as "not yet" (a server still starting).
    After ``timeout`` seconds the test fails naming ``what`` and the last error; the
    deadline only catches a hang, it never measures speed."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = condition()
        except ignore as e:
            last = e
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            hint = f" (last error: {last!r})" if last is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{hint}")
        time.sleep(interval)  # poll interval; the deadline bounds the wait


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split(stmt: Statement) -> tuple[str, Sequence[object]]:
    return (stmt, ()) if isinstance(stmt, str) else stmt


def tamper_sqlite(path: Path | str, *statements: Statement) -> None:
    """Run ``statements`` on a SQLite audit store as an intruder with write access to
    its file would: every append-only trigger is dropped first, in one transaction."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        for (name,) in triggers.fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        for stmt in statements:
            conn.execute(*_split(stmt))
        conn.execute("COMMIT")
    finally:
        conn.close()


def tamper_postgres(admin_url: str, *statements: Statement) -> list[int]:
    """Run ``statements`` on a PostgreSQL audit store as its owner: the append-only
    triggers of every audit table are disabled first. Returns each statement's row
    count."""
    counts: list[int] = []
    with psycopg.connect(admin_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename LIKE 'audit\\_%'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
        for stmt in statements:
            sql, params = _split(stmt)
            counts.append(conn.execute(sql, params or None).rowcount)  # type: ignore[arg-type]
    return counts
