"""SQLite store: the embedded default, in WAL mode.

URL: ``sqlite:///abs/path/to/audit.db`` (everything after ``sqlite://`` is the path).
Durability is SQLite's ``synchronous`` setting, chosen with a URL parameter:

- ``synchronous=full`` (the default): every commit fsyncs the WAL before returning.
  An acknowledged append survives a process crash, an OS crash and power loss
  (given a disk that honours fsync).
- ``synchronous=extra``: as ``full``; in WAL mode SQLite adds nothing more for
  commits (the extra directory sync applies to rollback journals), so it buys no
  durability here but is accepted for operators who standardise on it.
- ``unsafe_synchronous=normal``: the WAL is fsynced only at checkpoints. The database
  stays consistent, and acknowledged appends survive a process crash (SIGKILL), but
  the most recent commits can be lost on an OS crash or power loss. Not durable in
  the sense this log promises; hence the unsafe name, and a warning at start-up.
- ``unsafe_synchronous=off``: no fsync at all; an OS crash or power loss can lose
  commits *and corrupt the database*. For benchmarks of the CPU path only.

Append-only enforcement: triggers refuse UPDATE and DELETE on every table (created by
the migration); in addition the application's connections carry an authorizer that
refuses UPDATE, DELETE, DROP and ALTER before a statement is even prepared.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import structlog

from ._store import VERIFY_COLUMNS, Store, migrations
from .errors import ConfigError, DuplicateIdError, StoreError, TemporaryError
from .sqlite import BUSY_TIMEOUT_S, enable_wal

__all__ = ["SqliteStore"]

_log = structlog.get_logger("audit.store.sqlite")

_DENY = {
    sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_UPDATE,
    sqlite3.SQLITE_DROP_TABLE,
    sqlite3.SQLITE_DROP_TRIGGER,
    sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_VIEW,
    sqlite3.SQLITE_ALTER_TABLE,
}


def _authorizer(
    action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
) -> int:
    if action in _DENY:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _parse_url(url: str) -> tuple[Path, str]:
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigError(f"{url!r} is not a SQLite store URL (sqlite:///path/to/audit.db)")
    if not parts.path or parts.path == "/":
        raise ConfigError("the SQLite store URL has no file path (sqlite:///path/to/audit.db)")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    sync = "FULL"
    if "synchronous" in params:
        v = params.pop("synchronous").upper()
        if v not in ("FULL", "EXTRA"):
            raise ConfigError(
                "synchronous must be full or extra (weaker settings are "
                "unsafe_synchronous=normal|off)"
            )
        sync = v
    if "unsafe_synchronous" in params:
        v = params.pop("unsafe_synchronous").upper()
        if v not in ("NORMAL", "OFF"):
            raise ConfigError("unsafe_synchronous must be normal or off")
        sync = v
    if params:
        raise ConfigError(f"unknown SQLite store option(s): {', '.join(sorted(params))}")
    return Path(parts.path), sync


def _owner_only(path: Path) -> None:
    """Create the store file readable by its owner only, whatever the umask, and
    tighten one an older version left readable by others: entries hold personal data.
    SQLite creates ``-wal`` and ``-shm`` with the database file's mode; any left over
    from before are tightened too."""
    try:
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            # another user's copy (a read-only replica being verified) is left as it is
            if p.exists() and p.stat().st_uid == os.getuid() and p.stat().st_mode & 0o077:
                p.chmod(0o600)
    except OSError as e:
        raise StoreError(
            f"cannot create SQLite store {path} readable by its owner only: {e}"
        ) from e


class SqliteStore(Store):
    """The SQLite implementation of :class:`~audit._store.Store`."""

    dialect = "sqlite"

    def __init__(self, url: str, *, create: bool = True):
        super().__init__()
        self.path, self.synchronous = _parse_url(url)
        self.open_url = url  # for verification workers, which open their own connections
        self.url_redacted = f"sqlite://{self.path}"
        if self.synchronous in ("NORMAL", "OFF"):
            _log.warning(
                "unsafe_sqlite_synchronous", synchronous=self.synchronous, path=str(self.path)
            )
        if not self.path.exists() and not create:
            raise ConfigError(f"audit store {self.path} does not exist")
        if not self.path.parent.is_dir():
            raise ConfigError(f"directory {self.path.parent} does not exist")
        self._wlock = threading.Lock()
        self._closed = False
        _owner_only(self.path)
        self._wconn = self._connect()

    def _connect(self, *, guarded: bool = True) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S
            )
            enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA cache_size=-65536")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open SQLite store {self.path}: {e}") from e
        if guarded:
            conn.set_authorizer(_authorizer)
        self._opened(conn)
        return conn

    def close(self) -> None:
        self._closed = True
        super().close()

    def _read_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    @contextmanager
    def snapshot(self, *, share: str | None = None) -> Iterator[str | None]:
        """One WAL read transaction on this thread's connection (``share`` is ignored:
        SQLite cannot hand a snapshot to another process). Writers go on committing;
        this reader keeps seeing the state of its first read until the end."""
        conn = self._read_conn()
        if conn.in_transaction:
            yield None
            return
        try:
            conn.execute("BEGIN DEFERRED")
            conn.execute(
                "SELECT COUNT(*) FROM sqlite_master"
            ).fetchone()  # the snapshot starts here
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(e) from e
        try:
            yield None
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # read-only: nothing to keep

    _read_errors = (sqlite3.OperationalError,)

    def _read_error(self, e: Exception) -> StoreError:
        assert isinstance(e, sqlite3.Error)
        return _translate(e)

    def _fetch_verify(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """``verify_rows`` must name a bad entry, not fail, whatever a tamperer stored.
        SQLite keeps any type in any column: a BLOB in a text column makes json_array
        refuse the whole chunk, and TEXT that is not UTF-8 (a leaf or hash written as
        text) makes the driver refuse it. Such a chunk is read again with every text
        column that is not text turned into a value no leaf can hold (a NUL and its type
        name) and text decoded leniently: the verifier then reports those entries."""
        conn = self._read_conn()
        try:
            return list(conn.execute(sql, params).fetchall())
        except sqlite3.OperationalError:
            pass
        any_type = ", ".join(
            f"CASE WHEN typeof(e.{c}) IN ('text', 'null') THEN e.{c} "
            f"ELSE char(0) || typeof(e.{c}) END"
            for c in VERIFY_COLUMNS
        )
        conn.text_factory = _lenient_text
        try:
            return list(
                conn.execute(
                    self._verify_sql(f"CAST(json_array({any_type}) AS BLOB)"), params
                ).fetchall()
            )
        except sqlite3.OperationalError as e:
            raise _translate(e) from e
        finally:
            conn.text_factory = str

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._wlock:
            conn = self._wconn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as e:
                raise _translate(e) from e
            try:
                yield conn.cursor()
            except sqlite3.Error as e:
                conn.execute("ROLLBACK")
                raise _translate(e) from e
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _translate(e) from e

    def schema_version(self) -> int:
        conn = self._read_conn()
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='audit_schema_migrations'"
        ).fetchone()
        if row is None:
            return 0
        return int(
            conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM audit_schema_migrations"
            ).fetchone()[0]
        )

    def migrate(self) -> list[str]:
        """Apply every pending migration on an unguarded connection, all in ONE
        transaction: another process opening the store meanwhile waits for the write
        lock and then sees the schema before or after, never a store half-way (it
        would refuse one at an older version as needing ``enclave audit migrate``)."""
        applied: list[str] = []
        conn = self._connect(guarded=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS audit_schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied TEXT NOT NULL)"
            )
            for version, name, sql in migrations("sqlite"):
                done = conn.execute(
                    "SELECT 1 FROM audit_schema_migrations WHERE version = ?", (version,)
                ).fetchone()
                if done:
                    continue
                for stmt in _split_sql(sql):
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO audit_schema_migrations (version, name, applied) VALUES (?,?,?)",
                    (version, name, datetime.now(UTC).isoformat()),
                )
                applied.append(name)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"migration of {self.path} failed: {e}") from e
        finally:
            self._forget(conn)
            conn.close()
        return applied


def _split_sql(sql: str) -> list[str]:
    """Split a migration into statements (triggers contain ``;`` inside BEGIN..END)."""
    out: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--") and not buf.strip():
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def _lenient_text(data: bytes) -> str:
    """TEXT as str even when it is not UTF-8 (the bytes kept as surrogate escapes)."""
    return data.decode("utf-8", "surrogateescape")


def _translate(e: sqlite3.Error) -> StoreError:
    msg = str(e).splitlines()[0][:300]
    if isinstance(e, sqlite3.IntegrityError) and (
        "audit_entries_event_id_scoped" in msg or "audit_entries.event_id" in msg
    ):
        return DuplicateIdError("an event id is already in the log")
    if isinstance(e, sqlite3.OperationalError) and ("locked" in msg or "busy" in msg):
        return TemporaryError(f"SQLite store is busy: {msg}", delay=1.0)
    return StoreError(f"SQLite store refused the operation: {msg}")
