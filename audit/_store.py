"""The store interface shared by SQLite and PostgreSQL, and the SQL both speak.

A store keeps five insert-only tables (entries, full tiles, tree heads, checkpoints,
verifier keys) and knows nothing of hashing or signing: :mod:`audit.log` decides what
to write, the store writes it in one transaction and says when it is durable.
Database errors are translated here into :mod:`audit.errors` types.
"""

from __future__ import annotations

import base64
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, NamedTuple

from ._events import time_ns
from .errors import ConfigError, EventError, StoreError

__all__ = [
    "EntryRow",
    "EventKey",
    "Query",
    "Store",
    "TileRow",
    "decode_cursor",
    "encode_cursor",
    "migrations",
    "parse_time_ns",
]


EventKey = tuple[str, str, str | None]
"""What makes an event id unique: ``(event_id, source, enclave)``."""


class EntryRow(NamedTuple):
    """One row of ``audit_entries`` (columns in table order after ``idx``)."""

    leaf_hash: bytes
    event_id: str
    time_ns: int
    source: str
    actor: str
    action: str
    enclave: str | None
    outcome: str
    leaf: bytes


class TileRow(NamedTuple):
    level: int
    idx: int
    root: bytes
    hashes: bytes


_MIN_NS = -(2**63)  # a time or index as the stores hold it: a signed 64-bit integer
_MAX_NS = 2**63 - 1


def parse_time_ns(value: str | datetime) -> int:
    """Nanoseconds since the epoch for an RFC 3339 UTC string or an aware datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError("times must be timezone-aware (UTC)")
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
        if not _MIN_NS <= ns <= _MAX_NS:
            raise ConfigError(
                f"{value.isoformat()} is outside the times the log can hold (1677 to 2262)"
            )
        return ns
    try:
        return time_ns(value.strip())
    except EventError:
        raise ConfigError(
            f"{value!r} is not an RFC 3339 UTC time (like 2026-11-26T10:00:00Z)"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """A filter over the log. Every given field must match; ``since`` is inclusive,
    ``until`` exclusive (the sender's ``time``). Results are ordered by time, then index."""

    actor: str | None = None
    enclave: str | None = None
    action: str | None = None
    outcome: str | None = None
    source: str | None = None
    since: str | datetime | None = None
    until: str | datetime | None = None
    newest_first: bool = False


def encode_cursor(time_ns: int, idx: int) -> str:
    """An opaque page cursor: the position after the last result returned."""
    return base64.urlsafe_b64encode(f"{time_ns}:{idx}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """The position encoded by :func:`encode_cursor`; ConfigError when tampered with."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        t, i = raw.split(":")
        pos = int(t), int(i)
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("invalid cursor") from None
    if not (_MIN_NS <= pos[0] <= _MAX_NS and 0 <= pos[1] <= _MAX_NS):
        raise ConfigError("invalid cursor")  # a position no entry can have
    return pos


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """The (version, name, sql) migrations for ``dialect``, in order."""
    pkg = resources.files("audit._migrations").joinpath(dialect)
    out = []
    for f in sorted(pkg.iterdir(), key=lambda p: p.name):
        if f.name.endswith(".sql"):
            version = int(f.name.split("_", 1)[0])
            out.append((version, f.name[:-4], f.read_text(encoding="utf-8")))
    return out


ENTRY_COLUMNS = "idx, leaf_hash, event_id, time_ns, source, actor, action, enclave, outcome, leaf"
VERIFY_COLUMNS = ("event_id", "source", "actor", "action", "enclave", "outcome")
"""The text columns :meth:`Store.verify_rows` returns, in this order."""
UNIT_PACKING = "\x1f"
"""A store may pack the six text columns as ``event_id US source US actor US action
US enclave' US outcome`` (US = U+001F), where ``enclave'`` is empty for NULL and
U+001E followed by the value otherwise. It reads back exactly when the str holds five
US, that is when no value contains one; else verify fetches that entry's columns as
they are (:meth:`Store.entry_columns`). A NULL in another column makes it NULL."""


class Store(ABC):
    """Append-only storage of the log (one instance per process, thread-safe)."""

    dialect: str
    url_redacted: str

    def __init__(self) -> None:
        self._local = threading.local()
        self._conns: list[Any] = []  # every open connection, for close()
        self._conns_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._conns_lock:
            for c in self._conns:
                c.close()
            self._conns.clear()

    def _opened(self, conn: Any) -> None:
        """Track a new connection so that :meth:`close` closes it."""
        with self._conns_lock:
            self._conns.append(conn)

    def _forget(self, conn: Any) -> None:
        """Stop tracking ``conn`` (the caller closes it or has lost it)."""
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)

    @abstractmethod
    def schema_version(self) -> int:
        """The highest applied migration, 0 for an empty database."""

    @abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    # -- primitive access implemented by each backend ------------------------------
    @abstractmethod
    def _read_conn(self) -> Any:
        """A connection for reads in the current thread (autocommit)."""

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A write transaction holding the log's writer lock; yields a cursor."""

    @abstractmethod
    def snapshot(self, *, share: str | None = None) -> AbstractContextManager[str | None]:
        """Run this thread's reads inside one read-only transaction: every read sees the
        same committed state of the store, whatever writers commit meanwhile.

        Yields a token that other processes may pass as ``share`` to read the very same
        state (PostgreSQL: an exported snapshot id), or None where the backend cannot
        share one (SQLite: each process gets its own, later, snapshot). Re-entrant: a
        nested call reuses the open transaction.
        """

    def _q(self, sql: str) -> str:
        return sql

    #: The driver errors a read may raise; :meth:`_read_error` translates them.
    _read_errors: tuple[type[Exception], ...]

    @abstractmethod
    def _read_error(self, e: Exception) -> StoreError:
        """``e``, one of :attr:`_read_errors`, as this package's error."""

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return list(self._read_conn().execute(self._q(sql), params).fetchall())
        except self._read_errors as e:
            raise self._read_error(e) from e

    def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self._read_conn().execute(self._q(sql), params).fetchone()
        except self._read_errors as e:
            raise self._read_error(e) from e

    # -- sequencing ----------------------------------------------------------------
    def sequence(self, rows: Sequence[EntryRow]) -> int:
        """Durably append ``rows`` with contiguous indexes in one transaction; return the
        first index. Returns only after the commit is durable (per the store's setting)."""
        try:
            with self._write() as cur:
                cur.execute(self._q("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries"))
                first = int(cur.fetchone()[0])
                cur.executemany(
                    self._q(
                        f"INSERT INTO audit_entries ({ENTRY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 (constant)
                    ),
                    [(first + i, *r) for i, r in enumerate(rows)],
                )
        except OverflowError:  # the driver's refusal of an integer past 64 bits
            raise EventError(
                "a value of the batch is outside what the store can hold (64-bit integers)"
            ) from None
        return first

    def find_event_ids(self, keys: Sequence[EventKey]) -> dict[EventKey, tuple[int, bytes]]:
        """Existing entries with these ``(event_id, source, enclave)`` keys: ``{key:
        (index, leaf)}``. Ids are unique per source and enclave, not across the log."""
        wanted = set(keys)
        ids = sorted({k[0] for k in wanted})
        out: dict[EventKey, tuple[int, bytes]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for idx, eid, source, enclave, leaf in self._fetchall(
                "SELECT idx, event_id, source, enclave, leaf FROM audit_entries "  # noqa: S608
                f"WHERE event_id IN ({marks})",
                chunk,
            ):
                key = (eid, source, enclave)
                if key in wanted:
                    out[key] = (int(idx), bytes(leaf))
        return out

    def size(self) -> int:
        """Number of sequenced entries (max index + 1)."""
        row = self._fetchone("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries")
        return int(row[0])

    # -- entry reads -----------------------------------------------------------------
    def leaf(self, idx: int) -> bytes | None:
        row = self._fetchone("SELECT leaf FROM audit_entries WHERE idx = ?", (idx,))
        return None if row is None else bytes(row[0])

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._fetchall(
            "SELECT leaf_hash FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )
        return [bytes(r[0]) for r in rows]

    def entries(self, start: int, end: int) -> list[tuple[Any, ...]]:
        """Rows ``(idx, leaf_hash, event_id, time_ns, source, actor, action, enclave,
        outcome, leaf)`` with ``start <= idx < end`` in index order (gaps show as gaps)."""
        return self._fetchall(
            f"SELECT {ENTRY_COLUMNS} FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx",  # noqa: S608
            (start, end),
        )

    def iter_entries(
        self, start: int, end: int, *, chunk: int = 20_000
    ) -> Iterator[tuple[Any, ...]]:
        """Stream entries in index order in bounded chunks (constant memory)."""
        pos = start
        while pos < end:
            rows = self.entries(pos, min(end, pos + chunk))
            yield from rows
            pos += chunk

    def count_entries(self) -> int:
        return int(self._fetchone("SELECT COUNT(*) FROM audit_entries")[0])

    # -- tree ------------------------------------------------------------------------
    def tile(self, level: int, idx: int) -> bytes | None:
        row = self._fetchone(
            "SELECT hashes FROM audit_tiles WHERE level = ? AND idx = ?", (level, idx)
        )
        return None if row is None else bytes(row[0])

    def tile_roots(self, level: int, start: int, end: int) -> list[bytes]:
        rows = self._fetchall(
            "SELECT root FROM audit_tiles WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
            (level, start, end),
        )
        return [bytes(r[0]) for r in rows]

    def tiles(self, level: int, start: int, end: int) -> list[TileRow]:
        rows = self._fetchall(
            "SELECT level, idx, root, hashes FROM audit_tiles WHERE level = ? AND idx >= ? "
            "AND idx < ? ORDER BY idx",
            (level, start, end),
        )
        return [TileRow(int(a), int(b), bytes(c), bytes(d)) for a, b, c, d in rows]

    def tile_levels(self) -> dict[int, int]:
        """``{level: number of full tiles}`` (max index + 1 per level)."""
        rows = self._fetchall("SELECT level, MAX(idx) + 1 FROM audit_tiles GROUP BY level")
        return {int(a): int(b) for a, b in rows}

    def integration_rows(self, start: int, end: int) -> list[tuple[Any, ...]]:
        """``(idx, leaf_hash, time_ns, source, actor, action, enclave, outcome)`` in order."""
        return self._fetchall(
            "SELECT idx, leaf_hash, time_ns, source, actor, action, enclave, outcome "
            "FROM audit_entries WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )

    def index_rows(self, start: int, end: int) -> list[tuple[Any, ...]]:
        """``(idx, time_ns, source, actor, action, enclave, outcome)`` of the query index."""
        return self._fetchall(
            "SELECT idx, time_ns, source, actor, action, enclave, outcome FROM audit_index "
            "WHERE idx >= ? AND idx < ? ORDER BY idx",
            (start, end),
        )

    verify_chunk = 512
    """Rows per ``verify_rows`` query when verifying: small keeps them in the CPU caches
    (SQLite answers each query in microseconds; PostgreSQL raises it)."""
    _SAME = "IS"  # null-safe equality in this dialect

    def _verify_columns(self) -> str:
        """How ``verify_rows`` returns the text columns (SQL): here one JSON array of
        them, as bytes (one value to decode instead of six driver conversions, which was
        most of what a SQLite row cost)."""
        return f"CAST(json_array({', '.join(f'e.{c}' for c in VERIFY_COLUMNS)}) AS BLOB)"

    def verify_rows(self, start: int, end: int) -> list[tuple[Any, ...]]:
        """Entries ``start <= idx < end`` in index order as ``(idx, leaf_hash, leaf,
        time_ns, indexed, columns)``. ``columns`` packs the stored ``[event_id, source,
        actor, action, enclave, outcome]`` (:data:`VERIFY_COLUMNS`) into one value:
        a JSON array as UTF-8 bytes, or a str of the :data:`UNIT_PACKING` form
        (:func:`audit._verify.unpack_columns` reads both). ``indexed`` is true iff the
        entry's query-index row exists and each of its columns equals the entry's own
        (compared by the database, null-safe)."""
        return self._fetch_verify(
            self._verify_sql(self._verify_columns()), (start, end, start, end)
        )

    def entry_columns(self, idx: int) -> tuple[Any, ...] | None:
        """The six stored :data:`VERIFY_COLUMNS` of entry ``idx`` as they are, or None
        (verify's reference when a packed form cannot be read back unambiguously)."""
        row = self._fetchone(
            f"SELECT {', '.join(VERIFY_COLUMNS)} FROM audit_entries WHERE idx = ?",  # noqa: S608
            (idx,),
        )
        return None if row is None else tuple(row)

    def _verify_sql(self, columns: str) -> str:
        """The ``verify_rows`` query with ``columns`` (SQL) for the text columns."""
        same = " AND ".join(
            f"i.{c} {self._SAME} e.{c}"
            for c in ("time_ns", "source", "actor", "action", "enclave", "outcome")
        )
        # The index side is bounded too: without it PostgreSQL's merge join reads the
        # index table from its first row for every chunk (quadratic in the log's size).
        return (
            f"SELECT e.idx, e.leaf_hash, e.leaf, e.time_ns, "  # noqa: S608 (constant)
            f"(i.idx IS NOT NULL AND {same}), {columns} FROM audit_entries e "
            "LEFT JOIN audit_index i ON i.idx = e.idx AND i.idx >= ? AND i.idx < ? "
            "WHERE e.idx >= ? AND e.idx < ? ORDER BY e.idx"
        )

    def _fetch_verify(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._fetchall(sql, params)

    def index_count(self) -> tuple[int, int]:
        """``(rows, max idx + 1)`` of the query index."""
        row = self._fetchone("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM audit_index")
        return int(row[0]), int(row[1])

    def commit_integration(
        self,
        tiles: Sequence[TileRow],
        head: tuple[int, bytes, str],
        *,
        expect_size: int,
        index: Sequence[tuple[Any, ...]] = (),
    ) -> bool:
        """Write new full tiles, query-index rows and the new tree head in one transaction.

        Returns False (writing nothing) when the latest stored head is no longer
        ``expect_size``: another integrator got there first and the caller must reload.
        """
        with self._write() as cur:
            cur.execute(self._q("SELECT COALESCE(MAX(size), 0) FROM audit_tree_heads"))
            if int(cur.fetchone()[0]) != expect_size:
                return False
            if tiles:
                cur.executemany(
                    self._q(
                        "INSERT INTO audit_tiles (level, idx, root, hashes) VALUES (?,?,?,?) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    list(tiles),
                )
            if index:
                cur.executemany(
                    self._q(
                        "INSERT INTO audit_index (idx, time_ns, source, actor, action, "
                        "enclave, outcome) "
                        "VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
                    ),
                    list(index),
                )
            cur.execute(
                self._q("INSERT INTO audit_tree_heads (size, root, created) VALUES (?,?,?)"), head
            )
        return True

    def latest_head(self) -> tuple[int, bytes] | None:
        row = self._fetchone("SELECT size, root FROM audit_tree_heads ORDER BY size DESC LIMIT 1")
        return None if row is None else (int(row[0]), bytes(row[1]))

    def head(self, size: int) -> bytes | None:
        row = self._fetchone("SELECT root FROM audit_tree_heads WHERE size = ?", (size,))
        return None if row is None else bytes(row[0])

    def heads(self, *, after: int = -1, limit: int = 10_000) -> list[tuple[int, bytes]]:
        """Stored tree heads with size > ``after``, in size order, at most ``limit``."""
        rows = self._fetchall(
            "SELECT size, root FROM audit_tree_heads WHERE size > ? ORDER BY size LIMIT ?",
            (after, limit),
        )
        return [(int(a), bytes(b)) for a, b in rows]

    # -- checkpoints and keys ----------------------------------------------------------
    def add_checkpoint(self, *, size: int, root: bytes, note: str, created: str, vkey: str) -> bool:
        """Store a signed checkpoint; False (storing nothing) when the newest stored one is
        already larger: another process signed a later tree meanwhile (sizes never go back)."""
        with self._write() as cur:
            cur.execute(
                self._q("SELECT seq, size FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            )
            row = cur.fetchone()
            if row is not None and int(row[1]) > size:
                return False
            seq = 0 if row is None else int(row[0]) + 1
            cur.execute(self._q("SELECT 1 FROM audit_keys WHERE vkey = ?"), (vkey,))
            if cur.fetchone() is None:
                cur.execute(
                    self._q("INSERT INTO audit_keys (vkey, added) VALUES (?, ?)"), (vkey, created)
                )
            cur.execute(
                self._q(
                    "INSERT INTO audit_checkpoints (seq, size, root, note, created) VALUES "
                    "(?,?,?,?,?)"
                ),
                (seq, size, root, note, created),
            )
        return True

    def checkpoints(
        self, *, after_seq: int = -1, limit: int = 10_000
    ) -> list[tuple[int, int, bytes, str, str]]:
        """``(seq, size, root, note, created)`` of stored checkpoints with seq > ``after_seq``,
        oldest first, at most ``limit``."""
        return [
            (int(a), int(b), bytes(c), str(d), str(e))
            for a, b, c, d, e in self._fetchall(
                "SELECT seq, size, root, note, created FROM audit_checkpoints WHERE seq > ? "
                "ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        ]

    def latest_checkpoint(self) -> tuple[int, bytes, str] | None:
        row = self._fetchone(
            "SELECT size, root, note FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
        )
        return None if row is None else (int(row[0]), bytes(row[1]), str(row[2]))

    def verifier_keys(self) -> list[str]:
        return [
            str(r[0]) for r in self._fetchall("SELECT vkey FROM audit_keys ORDER BY added, vkey")
        ]

    # -- queries ---------------------------------------------------------------------
    def query(
        self, q: Query, *, after: tuple[int, int] | None, limit: int
    ) -> list[tuple[int, int, bytes]]:
        """``(idx, time_ns, leaf)`` rows matching ``q`` after position ``after`` (integrated
        entries only: the query index is written at integration)."""
        where: list[str] = []
        params: list[Any] = []
        for col in ("actor", "enclave", "action", "outcome", "source"):
            v = getattr(q, col)
            if v is not None:
                where.append(f"i.{col} = ?")
                params.append(v)
        if q.since is not None:
            where.append("i.time_ns >= ?")
            params.append(parse_time_ns(q.since))
        if q.until is not None:
            where.append("i.time_ns < ?")
            params.append(parse_time_ns(q.until))
        if after is not None:
            where.append(
                "(i.time_ns, i.idx) < (?, ?)" if q.newest_first else "(i.time_ns, i.idx) > (?, ?)"
            )
            params.extend(after)
        order = "i.time_ns DESC, i.idx DESC" if q.newest_first else "i.time_ns, i.idx"
        sql = (
            "SELECT i.idx, i.time_ns, e.leaf FROM audit_index i "
            "JOIN audit_entries e ON e.idx = i.idx"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order} LIMIT ?"
        params.append(limit)
        return [(int(a), int(b), bytes(c)) for a, b, c in self._fetchall(sql, params)]
