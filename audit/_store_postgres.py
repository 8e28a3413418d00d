"""PostgreSQL store (psycopg 3).

URL: any libpq ``postgresql://`` URL. The application connects as a *writer role*
that holds only SELECT and INSERT on the audit tables; the owner runs migrations
(``enclave audit migrate --store OWNER_URL --writer ROLE``), which also grants the
writer its privileges. Triggers marked ENABLE ALWAYS refuse UPDATE, DELETE (row level)
and TRUNCATE (statement level) for everyone, the owner included.

Durability: each append commits with ``synchronous_commit = on`` (set per session so
a laxer server default cannot weaken it): the commit returns only after the WAL
record is flushed to disk on the primary. With synchronous replication configured on
the server (``synchronous_standby_names``) it also waits for the standby.

Sequencing takes a transaction-scoped advisory lock, so several processes appending
to one database still get contiguous indexes (one sequencer at a time).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ._store import ENTRY_COLUMNS, VERIFY_COLUMNS, EntryRow, Store, migrations
from .errors import ConfigError, DuplicateIdError, StoreError, TemporaryError

__all__ = ["PostgresStore"]

_LOCK_KEY = 0x656E636C  # "encl": the advisory lock that serialises sequencers
_TABLES = (
    "audit_entries",
    "audit_index",
    "audit_tiles",
    "audit_tree_heads",
    "audit_checkpoints",
    "audit_keys",
)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, "", ""))


class PostgresStore(Store):
    """The PostgreSQL implementation of :class:`~audit._store.Store`."""

    dialect = "postgres"

    def __init__(self, url: str):
        super().__init__()
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("a PostgreSQL store URL starts with postgresql://")
        self._url = url
        self.open_url = url  # for verification workers (in memory only, never logged)
        self.url_redacted = _redact(url)
        self._wlock = threading.Lock()
        self._wconn = self._connect(autocommit=False)

    def _connect(self, *, autocommit: bool) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._url, autocommit=autocommit, connect_timeout=10)
            conn.execute("SET synchronous_commit = on")
            if not autocommit:
                conn.commit()
        except psycopg.Error as e:
            raise TemporaryError(
                f"cannot connect to PostgreSQL store {self.url_redacted}: {_msg(e)}", delay=2.0
            ) from e
        self._opened(conn)
        return conn

    _SAME = "IS NOT DISTINCT FROM"
    # Each query costs a round trip and a plan, so more rows than SQLite's 512; past a
    # few thousand, the client's memory traffic grows instead (4,096 measured about 6 %
    # faster than 20,000 over six alternating runs of a 1,000,000-entry verify).
    verify_chunk = 4096

    def _verify_columns(self) -> str:
        """The UNIT_PACKING form: a JSON array cost the server 2 µs a row to build, six
        text values cost this client 0.2 µs each to convert; one str about as much as
        one of them, and the server no more than the six."""
        e = {c: f"e.{c}" for c in VERIFY_COLUMNS}
        e["enclave"] = "COALESCE(E'\\x1e' || e.enclave, '')"
        return " || E'\\x1f' || ".join(e[c] for c in VERIFY_COLUMNS)

    def _fetch_verify(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """In binary format: leaves and hashes arrive as they are, not hex-encoded and
        decoded again (half the client's time per row in text format)."""
        try:
            with self._read_conn().cursor(binary=True) as cur:
                return list(cur.execute(self._q(text), params).fetchall())
        except psycopg.Error as e:
            raise _translate(e) from e

    def _q(self, text: str) -> str:
        return text.replace("?", "%s")

    def _read_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect(autocommit=True)
            self._local.conn = conn
        return conn

    @contextmanager
    def snapshot(self, *, share: str | None = None) -> Iterator[str | None]:
        """One REPEATABLE READ READ ONLY transaction on this thread's connection; yields
        its exported snapshot id. With ``share`` (an id exported by another session that
        is still open) this transaction reads exactly that session's snapshot."""
        conn = self._read_conn()
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            yield None
            return
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if share is not None:
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(share)))
                token: str | None = share
            else:
                token = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])
        except psycopg.Error as e:
            if not conn.closed:
                conn.execute("ROLLBACK")
            raise _translate(e) from e
        try:
            yield token
        finally:
            if not conn.closed and not conn.broken:
                conn.execute("ROLLBACK")  # read-only: nothing to keep

    _read_errors = (psycopg.Error,)

    def _read_error(self, e: Exception) -> StoreError:
        assert isinstance(e, psycopg.Error)
        return _translate(e)

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._wlock:
            conn = self._wconn
            if conn.closed or conn.broken:
                self._forget(conn)
                conn = self._wconn = self._connect(autocommit=False)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                    yield cur
                conn.commit()
            except psycopg.Error as e:
                if not conn.closed:
                    conn.rollback()
                raise _translate(e) from e
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    def sequence(self, rows: Sequence[EntryRow]) -> int:
        """As :meth:`Store.sequence`, with COPY (several times faster than INSERTs)."""
        with self._write() as cur:
            cur.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
            first = int(cur.fetchone()[0])
            with cur.copy(f"COPY audit_entries ({ENTRY_COLUMNS}) FROM STDIN") as copy:
                for i, r in enumerate(rows):
                    copy.write_row((first + i, *r))
        return first

    def schema_version(self) -> int:
        row = self._fetchone("SELECT to_regclass('audit_schema_migrations') IS NOT NULL")
        if not row[0]:
            return 0
        return int(
            self._fetchone("SELECT COALESCE(MAX(version), 0) FROM audit_schema_migrations")[0]
        )

    def migrate(self, *, writer: str | None = None) -> list[str]:
        """Apply pending migrations (as the table owner) and grant ``writer`` SELECT, INSERT."""
        applied: list[str] = []
        try:
            with psycopg.connect(self._url, autocommit=False) as conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS audit_schema_migrations "
                    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
                )
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY + 1,))
                conn.commit()
                for version, name, text in migrations("postgres"):
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY + 1,))
                    cur = conn.execute(
                        "SELECT 1 FROM audit_schema_migrations WHERE version = %s", (version,)
                    )
                    if cur.fetchone():
                        conn.commit()
                        continue
                    conn.execute(text.encode())
                    conn.execute(
                        "INSERT INTO audit_schema_migrations (version, name, applied) VALUES "
                        "(%s, %s, %s)",
                        (version, name, datetime.now(UTC).isoformat()),
                    )
                    conn.commit()
                    applied.append(name)
                if writer is not None:
                    role = sql.Identifier(writer)
                    for t in (*_TABLES, "audit_schema_migrations"):
                        conn.execute(
                            sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(
                                sql.Identifier(t), role
                            )
                        )
                        conn.execute(
                            sql.SQL("GRANT SELECT, INSERT ON TABLE {} TO {}").format(
                                sql.Identifier(t), role
                            )
                        )
                    conn.execute(
                        sql.SQL("REVOKE INSERT ON TABLE audit_schema_migrations FROM {}").format(
                            role
                        )
                    )
                    conn.commit()
        except psycopg.Error as e:
            raise StoreError(f"migration of {self.url_redacted} failed: {_msg(e)}") from e
        return applied


def _msg(e: psycopg.Error) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _translate(e: psycopg.Error) -> StoreError:
    if isinstance(e, psycopg.errors.UniqueViolation) and "event_id" in _msg(e):
        return DuplicateIdError("an event id is already in the log")
    if isinstance(e, psycopg.OperationalError) and not isinstance(e, psycopg.errors.QueryCanceled):
        return TemporaryError(f"PostgreSQL store unavailable: {_msg(e)}", delay=2.0)
    return StoreError(f"PostgreSQL store refused the operation: {_msg(e)}")
