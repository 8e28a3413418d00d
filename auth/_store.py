"""Identity store: users, credentials, sessions, invitations, enclaves, OIDC state.

``open_store(url=...)`` with ``sqlite:///path`` (default, local backend) or
``postgresql://...`` (production). The two dialects share one schema and one
set of statements; every multi-step change is one transaction. Secrets never
reach this layer in the clear: callers pass argon2id hashes, SHA-256 token
hashes and AES-GCM sealed blobs.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from audit.sqlite import enable_wal

from ._errors import ConflictError, InvalidInputError, StoreError
from ._store_base import (
    ClientRecord,
    Credential,
    EnclaveRecord,
    SessionRecord,
    Tx,
    User,
)
from ._store_oidc import EnclavesAndOidc
from ._store_sessions import SessionsAndCeremonies
from ._store_users import UsersAndCredentials

__all__ = [
    "ClientRecord",
    "Credential",
    "EnclaveRecord",
    "IdentityStore",
    "SessionRecord",
    "StoreError",
    "User",
    "open_store",
]


_MIGRATIONS_DIR = Path(__file__).parent / "_migrations"


def _sql_step(name: str) -> tuple[str, ...]:
    """The statements of ``_migrations/NAME.sql``: a ``;`` at a line's end ends one;
    ``--`` lines are comments."""
    text = (_MIGRATIONS_DIR / f"{name}.sql").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return tuple(
        st.strip() for st in re.split(r";[ \t]*$", "\n".join(lines), flags=re.M) if st.strip()
    )


#: A data step of a migration: runs inside the migration's transaction and returns
#: notes for the operator (printed by ``enclave portal migrate`` and audited).
DataStep = Callable[[Tx], list[str]]


def _fold_username_case(tx: Tx) -> list[str]:
    """Step 2: usernames become canonical (``auth._names.canonical_username``).

    Names that differ only by case were different accounts and are now one name, so
    nobody can tell which person each account belongs to: every account of such a
    group is disabled (sessions ended, outstanding invitations cancelled), the oldest
    keeps the canonical name and the others are renamed ``NAME+case-ID8``, until an
    officer re-binds the right one (``enclave users rebind``). Enclave memberships are
    lower-cased too; where both spellings were members, the canonical one's role stays.
    Outstanding invitations of accounts no longer ``invited`` are cancelled."""
    notes: list[str] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    for uid, name in tx.q("SELECT id, username FROM users ORDER BY created_at, id"):
        groups.setdefault(str(name).lower(), []).append((str(uid), str(name)))
    renames: list[tuple[str, str]] = []
    disabled: set[str] = set()
    for canonical, accounts in sorted(groups.items()):
        if len(accounts) == 1:
            if accounts[0][1] != canonical:
                renames.append((accounts[0][0], canonical))
            continue
        twins = [canonical]
        for uid, _ in accounts[1:]:
            suffix = f"+case-{uid[:8]}".lower()
            twins.append(canonical[: 128 - len(suffix)] + suffix)
        # The renamed twins first, so that the canonical name is free for the oldest.
        for (uid, _), new in reversed(list(zip(accounts, twins, strict=True))):
            tx.rc("UPDATE users SET username = ?, status = 'disabled' WHERE id = ?", (new, uid))
            tx.rc(
                "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL",
                (time.time(), uid),
            )
            disabled.add(uid)
        notes.append("usernames that differed only by case, now disabled: " + ", ".join(twins))
    for uid, new in renames:
        tx.rc("UPDATE users SET username = ? WHERE id = ?", (new, uid))
    for token_hash, payload in tx.q("SELECT token_hash, payload FROM access_tokens"):
        if json.loads(payload).get("user_id") in disabled:
            tx.rc("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))
    rows = [
        (str(e), str(n), str(r))
        for e, n, r in tx.q("SELECT enclave, username, role FROM enclave_members")
    ]
    role: dict[tuple[str, str], str] = {}
    for e, n, r in sorted(rows, key=lambda row: row[1] != row[1].lower()):  # canonical first
        role.setdefault((e, n.lower()), r)
    for e, lower in sorted({(e, n.lower()) for e, n, _ in rows if n != n.lower()}):
        tx.rc("DELETE FROM enclave_members WHERE enclave = ? AND LOWER(username) = ?", (e, lower))
        tx.q(
            "INSERT INTO enclave_members (enclave, username, role) VALUES (?, ?, ?)",
            (e, lower, role[(e, lower)]),
        )
    tx.rc(
        "DELETE FROM invitations WHERE used_at IS NULL AND user_id IN "
        "(SELECT id FROM users WHERE status != 'invited')"
    )
    return notes


MIGRATIONS: tuple[tuple[int, str, tuple[str | DataStep, ...]], ...] = (
    (1, "initial", _sql_step("0001_initial")),
    (2, "usernames_case_folded", (_fold_username_case,)),
    (3, "client_tier", _sql_step("0003_client_tier")),
)
"""The identity store's schema, as numbered steps; append, never edit a released one.
A step is SQL from ``_migrations/`` (``{blob}`` and ``{real}`` stand for the
backend's types) or a ``DataStep``. Stores in the field are at these versions."""

SCHEMA_VERSION = MIGRATIONS[-1][0]
_MIGRATION_LOCK = 0x656E636C  # PostgreSQL advisory lock: one migrating process at a time


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._c.execute(sql, tuple(params)).fetchall())

    def rc(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._c.execute(sql, tuple(params)).rowcount)


class _PgTx:
    def __init__(self, conn: Any) -> None:
        self._c = conn

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._c.execute(sql.replace("?", "%s"), tuple(params))
        return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def rc(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._c.execute(sql.replace("?", "%s"), tuple(params)).rowcount)


class IdentityStore(UsersAndCredentials, SessionsAndCeremonies, EnclavesAndOidc):
    """All persistent portal state. Thread-safe; safe across processes sharing one DB."""

    def __init__(self, *, url: str, migrate: bool = False) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        if url.startswith("sqlite:///"):
            path, _, query = url.removeprefix("sqlite:///").partition("?")
            if query and query.lower() != "synchronous=full":
                # No weaker setting is offered: with synchronous=normal a power cut can
                # lose the newest commits, and here those are single-use marks (TOTP
                # steps, invitations, authorization codes) that would become valid again.
                raise InvalidInputError(
                    "The only SQLite URL option of the identity store is synchronous=full "
                    "(the default); weaker settings are not offered because a power cut "
                    "could make a used TOTP step, invitation or authorization code valid "
                    "again."
                )
            if not path:
                raise InvalidInputError("The store URL names no file: use sqlite:///path/to.db.")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(
                    path, check_same_thread=False, isolation_level=None, timeout=10
                )
                enable_wal(conn, timeout=10)
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute("PRAGMA busy_timeout=10000")
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA secure_delete=ON")
            except sqlite3.Error as e:
                raise StoreError(f"Cannot open the identity store {path}: {e}.") from e
            self._sqlite = conn
            self._blob, self._real = "BLOB", "REAL"
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            try:
                self._pg = psycopg.connect(url, autocommit=True)
            except psycopg.Error as e:
                raise StoreError("Cannot connect to the PostgreSQL identity store.") from e
            self._blob, self._real = "BYTEA", "DOUBLE PRECISION"
        else:
            raise InvalidInputError("The store URL must start with sqlite:/// or postgresql://.")
        self.migration_notes: list[str] = []  # what data steps changed, for the operator
        try:
            self.migrations_applied = self._schema(migrate=migrate, steps=MIGRATIONS)
        except BaseException:
            self.close()
            raise

    def _schema(
        self, *, migrate: bool, steps: Sequence[tuple[int, str, Sequence[str | DataStep]]]
    ) -> list[str]:
        """Bring the schema to the last of ``steps``, in one transaction.

        A new store gets every step. A store made before steps were recorded holds
        step 1's tables: step 1 (all ``IF NOT EXISTS``) adopts it. Any later step on an
        existing store runs only with ``migrate`` (``enclave portal migrate``, after a
        backup); a store newer than this code is refused: nothing is changed."""
        latest = steps[-1][0]
        applied: list[str] = []
        with self._tx() as tx:
            if self._pg is not None:
                tx.q("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            tx.q(
                "CREATE TABLE IF NOT EXISTS identity_schema_migrations (version INTEGER "
                f"PRIMARY KEY, name TEXT NOT NULL, applied_at {self._real} NOT NULL)"
            )
            have = int(
                tx.q("SELECT COALESCE(MAX(version), 0) FROM identity_schema_migrations")[0][0]
            )
            if have > latest:
                raise StoreError(
                    f"The identity store is at schema version {have}, newer than this Enclave "
                    f"knows ({latest}): upgrade Enclave before using it."
                )
            existing = have > 0 or self._has_table(tx, "users")
            for version, name, stmts in steps:
                if version <= have:
                    continue
                if existing and version > 1 and not migrate:
                    raise StoreError(
                        f"The identity store is at schema version {max(have, 1)} and this "
                        f"Enclave needs {latest}: back it up, then run `enclave portal migrate`."
                    )
                for stmt in stmts:
                    if isinstance(stmt, str):
                        tx.q(stmt.format(blob=self._blob, real=self._real))
                    else:
                        self.migration_notes.extend(stmt(tx))
                tx.q(
                    "INSERT INTO identity_schema_migrations (version, name, applied_at) "
                    "VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                applied.append(f"{version:04d}_{name}")
        return applied

    def _has_table(self, tx: Tx, name: str) -> bool:
        if self._pg is not None:
            return tx.q("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0] is True
        return bool(tx.q("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)))

    def schema_version(self) -> int:
        """The last schema step applied to this store."""
        with self._tx(write=False) as tx:
            return int(
                tx.q("SELECT COALESCE(MAX(version), 0) FROM identity_schema_migrations")[0][0]
            )

    def close(self) -> None:
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
            if self._pg is not None:
                self._pg.close()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Tx]:
        """One transaction. Writers take SQLite's write lock up front (BEGIN IMMEDIATE)
        so read-then-write sequences cannot interleave across processes."""
        with self._lock:
            if self._sqlite is not None:
                conn = self._sqlite
                if not write:
                    # Reads run in autocommit: each statement sees a committed state.
                    try:
                        yield _SqliteTx(conn)
                    except sqlite3.Error as e:
                        raise StoreError(f"The identity store failed: {e}.") from e
                    return
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield _SqliteTx(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                except sqlite3.IntegrityError as e:
                    raise ConflictError("That record already exists.") from e
                except sqlite3.Error as e:
                    raise StoreError(f"The identity store failed: {e}.") from e
            else:
                import psycopg

                try:
                    with self._pg.transaction():
                        yield _PgTx(self._pg)
                except psycopg.errors.UniqueViolation as e:
                    raise ConflictError("That record already exists.") from e
                except psycopg.Error as e:
                    raise StoreError("The identity store failed.") from e


def open_store(*, url: str, migrate: bool = False) -> IdentityStore:
    """Open (and create if needed) the identity store at ``url``; with ``migrate``,
    apply pending schema steps to an existing store (see ``IdentityStore._schema``)."""
    return IdentityStore(url=url, migrate=migrate)
