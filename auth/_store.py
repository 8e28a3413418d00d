"""Identity store: users, credentials, sessions, invitations, enclaves, OIDC state.

``open_store(url=...)`` with ``sqlite:///path`` (default, local backend) or
``postgresql://...`` (production). The two dialects share one schema and one
set of statements; every multi-step change is one transaction. Secrets never
reach this layer in the clear: callers pass argon2id hashes, SHA-256 token
hashes and AES-GCM sealed blobs.
"""

# ruff: noqa: S608  (f-strings only splice the constant column lists; values are bound)
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from audit.sqlite import enable_wal

from ._errors import ConflictError, InvalidInputError, NotFoundError, StoreError
from ._names import canonical_username

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


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
        roles TEXT NOT NULL, status TEXT NOT NULL, locale TEXT NOT NULL,
        created_at {real} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS credentials (
        id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id), kind TEXT NOT NULL,
        label TEXT NOT NULL, secret {blob} NOT NULL, webauthn_id {blob} UNIQUE,
        sign_count INTEGER NOT NULL DEFAULT 0, aaguid TEXT, uv_capable INTEGER NOT NULL DEFAULT 0,
        backup_eligible INTEGER NOT NULL DEFAULT 0, biometric_attested INTEGER NOT NULL DEFAULT 0,
        approved INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
        locked_until {real} NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,
        created_at {real} NOT NULL, last_used_at {real})""",
    """CREATE TABLE IF NOT EXISTS totp_used_steps (
        credential_id TEXT NOT NULL, step BIGINT NOT NULL, PRIMARY KEY (credential_id, step))""",
    """CREATE TABLE IF NOT EXISTS invitations (
        token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL, created_by TEXT NOT NULL,
        expires_at {real} NOT NULL, used_at {real})""",
    """CREATE TABLE IF NOT EXISTS sessions (
        id_hash TEXT PRIMARY KEY, user_id TEXT, state TEXT NOT NULL, csrf TEXT NOT NULL,
        client_ip TEXT, created_at {real} NOT NULL, last_seen {real} NOT NULL,
        auth_time {real}, ended_at {real})""",
    """CREATE TABLE IF NOT EXISTS ceremonies (
        session_hash TEXT NOT NULL, purpose TEXT NOT NULL, challenge {blob} NOT NULL,
        expires_at {real} NOT NULL, PRIMARY KEY (session_hash, purpose))""",
    """CREATE TABLE IF NOT EXISTS enclaves (
        name TEXT PRIMARY KEY, tier TEXT NOT NULL, display_name TEXT NOT NULL,
        networks TEXT NOT NULL, hub_url TEXT NOT NULL, created_at {real} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS enclave_members (
        enclave TEXT NOT NULL, username TEXT NOT NULL, role TEXT NOT NULL,
        PRIMARY KEY (enclave, username))""",
    """CREATE TABLE IF NOT EXISTS oidc_clients (
        client_id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL, redirect_uris TEXT NOT NULL,
        post_logout_redirect_uris TEXT NOT NULL, enclave TEXT, created_at {real} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS auth_codes (
        code_hash TEXT PRIMARY KEY, payload TEXT NOT NULL, expires_at {real} NOT NULL,
        used INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS access_tokens (
        token_hash TEXT PRIMARY KEY, payload TEXT NOT NULL, expires_at {real} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ip_failures (ip TEXT NOT NULL, at {real} NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS name_throttle (
        key TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until {real} NOT NULL,
        updated_at {real} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ip_failures_ip_at ON ip_failures (ip, at)",
    """CREATE TABLE IF NOT EXISTS signing_keys (
        kid TEXT PRIMARY KEY, sealed {blob} NOT NULL, created_at {real} NOT NULL,
        retired_at {real})""",
]


class _Tx(Protocol):
    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def rc(self, sql: str, params: Sequence[Any] = ()) -> int: ...


#: A data step of a migration: runs inside the migration's transaction and returns
#: notes for the operator (printed by ``enclave portal migrate`` and audited).
DataStep = Callable[[_Tx], list[str]]


def _fold_username_case(tx: _Tx) -> list[str]:
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
    (1, "initial", tuple(_SCHEMA)),
    (2, "usernames_case_folded", (_fold_username_case,)),
    # The tier a client that is not an enclave's hub (the audit UI) demands: the portal
    # computes its ID token claims against it and refuses or steps up below it.
    (3, "client_tier", ("ALTER TABLE oidc_clients ADD COLUMN tier TEXT",)),
)
"""The identity store's schema, as numbered steps; append, never edit a released one.
A step is SQL (``{blob}`` and ``{real}`` stand for the backend's types) or a
``DataStep``."""

SCHEMA_VERSION = MIGRATIONS[-1][0]
_MIGRATION_LOCK = 0x656E636C  # PostgreSQL advisory lock: one migrating process at a time


@dataclass(frozen=True)
class User:
    id: str
    username: str
    display_name: str
    roles: frozenset[str]
    status: str  # invited | active | disabled
    locale: str
    created_at: float


@dataclass(frozen=True)
class Credential:
    id: str
    user_id: str
    kind: str  # password | totp | webauthn
    label: str
    secret: bytes  # argon2 hash (utf-8), sealed TOTP seed, or COSE public key
    webauthn_id: bytes | None
    sign_count: int
    aaguid: str | None
    uv_capable: bool
    backup_eligible: bool
    biometric_attested: bool
    approved: bool
    failures: int
    locked_until: float
    disabled: bool
    created_at: float
    last_used_at: float | None


@dataclass(frozen=True)
class SessionRecord:
    id_hash: str
    user_id: str | None
    state: dict[str, Any]
    csrf: str
    client_ip: str | None
    created_at: float
    last_seen: float
    auth_time: float | None
    ended_at: float | None


@dataclass(frozen=True)
class EnclaveRecord:
    name: str
    tier: str
    display_name: str
    networks: tuple[str, ...]
    members: tuple[tuple[str, str], ...]  # (username, role)
    hub_url: str
    created_at: float


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    secret_hash: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    enclave: str | None
    tier: str | None = None  # demanded by a client that is not an enclave's hub


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


class IdentityStore:
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

    def _has_table(self, tx: _Tx, name: str) -> bool:
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
    def _tx(self, *, write: bool = True) -> Iterator[_Tx]:
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

    # ----- users ---------------------------------------------------------------
    _USER_COLS = "id, username, display_name, roles, status, locale, created_at"

    @staticmethod
    def _user(r: Sequence[Any]) -> User:
        return User(
            id=r[0],
            username=r[1],
            display_name=r[2],
            roles=frozenset(x for x in str(r[3]).split(",") if x),
            status=r[4],
            locale=r[5],
            created_at=float(r[6]),
        )

    def create_user(
        self,
        *,
        user_id: str,
        username: str,
        display_name: str,
        roles: frozenset[str],
        status: str,
        locale: str,
        now: float,
    ) -> User:
        if canonical_username(username) != username:
            raise InvalidInputError(f"{username[:200]!r} is not a canonical username.")
        with self._tx() as tx:
            tx.q(
                f"INSERT INTO users ({self._USER_COLS}) VALUES (?,?,?,?,?,?,?)",
                (user_id, username, display_name, ",".join(sorted(roles)), status, locale, now),
            )
        return self.get_user(user_id=user_id)

    def get_user(self, *, user_id: str) -> User:
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT {self._USER_COLS} FROM users WHERE id = ?", (user_id,))
        if not rows:
            raise NotFoundError("No such user.")
        return self._user(rows[0])

    def find_user(self, *, username: str) -> User | None:
        """The user of that name in any case (``canonical_username``); None if none."""
        name = canonical_username(username)
        if name is None:
            return None
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT {self._USER_COLS} FROM users WHERE username = ?", (name,))
        return self._user(rows[0]) if rows else None

    def list_users(self) -> list[User]:
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT {self._USER_COLS} FROM users ORDER BY username")
        return [self._user(r) for r in rows]

    def set_user_locale(self, *, user_id: str, locale: str) -> None:
        with self._tx() as tx:
            tx.rc("UPDATE users SET locale = ? WHERE id = ?", (locale, user_id))

    # ----- credentials -----------------------------------------------------------
    _CRED_COLS = (
        "id, user_id, kind, label, secret, webauthn_id, sign_count, aaguid, uv_capable, "
        "backup_eligible, biometric_attested, approved, failures, locked_until, disabled, "
        "created_at, last_used_at"
    )

    @staticmethod
    def _cred(r: Sequence[Any]) -> Credential:
        return Credential(
            id=r[0],
            user_id=r[1],
            kind=r[2],
            label=r[3],
            secret=bytes(r[4]),
            webauthn_id=bytes(r[5]) if r[5] is not None else None,
            sign_count=int(r[6]),
            aaguid=r[7],
            uv_capable=bool(r[8]),
            backup_eligible=bool(r[9]),
            biometric_attested=bool(r[10]),
            approved=bool(r[11]),
            failures=int(r[12]),
            locked_until=float(r[13]),
            disabled=bool(r[14]),
            created_at=float(r[15]),
            last_used_at=float(r[16]) if r[16] is not None else None,
        )

    def add_credential(
        self,
        *,
        cred_id: str,
        user_id: str,
        kind: str,
        label: str,
        secret: bytes,
        now: float,
        webauthn_id: bytes | None = None,
        sign_count: int = 0,
        aaguid: str | None = None,
        uv_capable: bool = False,
        backup_eligible: bool = False,
        biometric_attested: bool = False,
        approved: bool = False,
        replace_kind: bool = False,
    ) -> Credential:
        """Insert a credential; ``replace_kind`` first removes the user's others of that kind."""
        with self._tx() as tx:
            if replace_kind:
                tx.rc("DELETE FROM credentials WHERE user_id = ? AND kind = ?", (user_id, kind))
            tx.q(
                f"INSERT INTO credentials ({self._CRED_COLS}) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,0,0,0,?,NULL)",
                (
                    cred_id,
                    user_id,
                    kind,
                    label,
                    secret,
                    webauthn_id,
                    sign_count,
                    aaguid,
                    int(uv_capable),
                    int(backup_eligible),
                    int(biometric_attested),
                    int(approved),
                    now,
                ),
            )
        return self.get_credential(cred_id=cred_id)

    def get_credential(self, *, cred_id: str) -> Credential:
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT {self._CRED_COLS} FROM credentials WHERE id = ?", (cred_id,))
        if not rows:
            raise NotFoundError("No such credential.")
        return self._cred(rows[0])

    def find_webauthn(self, *, webauthn_id: bytes) -> Credential | None:
        with self._tx(write=False) as tx:
            rows = tx.q(
                f"SELECT {self._CRED_COLS} FROM credentials WHERE webauthn_id = ?", (webauthn_id,)
            )
        return self._cred(rows[0]) if rows else None

    def list_credentials(self, *, user_id: str, kind: str | None = None) -> list[Credential]:
        with self._tx(write=False) as tx:
            if kind is None:
                rows = tx.q(
                    f"SELECT {self._CRED_COLS} FROM credentials WHERE user_id = ? "
                    "ORDER BY created_at",
                    (user_id,),
                )
            else:
                rows = tx.q(
                    f"SELECT {self._CRED_COLS} FROM credentials WHERE user_id = ? AND kind = ? "
                    "ORDER BY created_at",
                    (user_id, kind),
                )
        return [self._cred(r) for r in rows]

    def list_pending_credentials(self) -> list[Credential]:
        with self._tx(write=False) as tx:
            rows = tx.q(
                f"SELECT {self._CRED_COLS} FROM credentials WHERE approved = 0 "
                "AND kind != 'password' ORDER BY created_at"
            )
        return [self._cred(r) for r in rows]

    def approve_credential(self, *, cred_id: str) -> None:
        with self._tx() as tx:
            if not tx.rc("UPDATE credentials SET approved = 1 WHERE id = ?", (cred_id,)):
                raise NotFoundError("No such credential.")

    def delete_credential(self, *, cred_id: str) -> None:
        with self._tx() as tx:
            tx.rc("DELETE FROM totp_used_steps WHERE credential_id = ?", (cred_id,))
            if not tx.rc("DELETE FROM credentials WHERE id = ?", (cred_id,)):
                raise NotFoundError("No such credential.")

    def record_failure(
        self, *, cred_id: str, now: float, max_failures: int, backoff_after: int, backoff_s: int
    ) -> Credential:
        """Count one failure atomically; set the back-off and, at the limit, disable."""
        with self._tx() as tx:
            # One atomic increment: under PostgreSQL's READ COMMITTED a read-then-write
            # would lose concurrent failures; this UPDATE also holds the row until commit.
            rows = tx.q(
                "UPDATE credentials SET failures = failures + 1 WHERE id = ? RETURNING failures",
                (cred_id,),
            )
            if not rows:
                raise NotFoundError("No such credential.")
            failures = int(rows[0][0])
            locked_until = 0.0
            if failures >= backoff_after:
                # 30 s at the 5th failure, doubling each time, at most one hour.
                locked_until = now + min(3600, backoff_s * 2 ** (failures - backoff_after))
            tx.rc(
                "UPDATE credentials SET locked_until = ?, disabled = "
                "CASE WHEN ? >= ? THEN 1 ELSE disabled END WHERE id = ?",
                (locked_until, failures, max_failures, cred_id),
            )
        return self.get_credential(cred_id=cred_id)

    def name_throttle(self, *, key: str) -> tuple[int, float]:
        """(failures, locked_until) for a username that has no password credential."""
        with self._tx(write=False) as tx:
            rows = tx.q("SELECT failures, locked_until FROM name_throttle WHERE key = ?", (key,))
        return (int(rows[0][0]), float(rows[0][1])) if rows else (0, 0.0)

    def record_name_failure(
        self, *, key: str, now: float, backoff_after: int, backoff_s: int
    ) -> None:
        """The same counting as ``record_failure``, for names that are not users, so the
        answers cannot tell the two apart."""
        with self._tx() as tx:
            tx.rc(
                "DELETE FROM name_throttle WHERE key != ? AND updated_at < ?",
                (key, now - 30 * 86400),
            )
            # One atomic upsert-and-increment (no read-then-write: see record_failure).
            rows = tx.q(
                "INSERT INTO name_throttle (key, failures, locked_until, updated_at) "
                "VALUES (?, 1, 0, ?) ON CONFLICT (key) DO UPDATE SET "
                "failures = name_throttle.failures + 1, updated_at = excluded.updated_at "
                "RETURNING failures",
                (key, now),
            )
            failures = int(rows[0][0])
            locked_until = 0.0
            if failures >= backoff_after:
                locked_until = now + min(3600, backoff_s * 2 ** (failures - backoff_after))
            tx.rc("UPDATE name_throttle SET locked_until = ? WHERE key = ?", (locked_until, key))

    def record_success(self, *, cred_id: str, now: float, sign_count: int | None = None) -> None:
        with self._tx() as tx:
            if sign_count is None:
                tx.rc(
                    "UPDATE credentials SET failures = 0, locked_until = 0, last_used_at = ? "
                    "WHERE id = ?",
                    (now, cred_id),
                )
            else:
                tx.rc(
                    "UPDATE credentials SET failures = 0, locked_until = 0, last_used_at = ?, "
                    "sign_count = ? WHERE id = ?",
                    (now, sign_count, cred_id),
                )

    def claim_totp_step(self, *, cred_id: str, step: int, now: float | None = None) -> bool:
        """True once per (credential, step) and only for steps after the last accepted one.

        The primary key makes one step's claim atomic across processes sharing the
        store; the credential row lock (PostgreSQL ``FOR UPDATE``; SQLite's BEGIN
        IMMEDIATE write lock) serialises claims of different steps, so an older step is
        never accepted after a newer one committed.
        """
        with self._tx() as tx:
            if self._pg is not None:
                tx.q("SELECT 1 FROM credentials WHERE id = ? FOR UPDATE", (cred_id,))
            later = tx.q(
                "SELECT 1 FROM totp_used_steps WHERE credential_id = ? AND step >= ?",
                (cred_id, step),
            )
            if later:
                return False
            n = tx.rc(
                "INSERT INTO totp_used_steps (credential_id, step) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                (cred_id, step),
            )
            # Steps older than the acceptance window are never accepted again anyway.
            tx.rc(
                "DELETE FROM totp_used_steps WHERE credential_id = ? AND step < ?",
                (cred_id, step - 10),
            )
            if n == 1 and now is not None:
                # A success resets the consecutive-failure counter in the same commit.
                tx.rc(
                    "UPDATE credentials SET failures = 0, locked_until = 0, last_used_at = ? "
                    "WHERE id = ?",
                    (now, cred_id),
                )
        return n == 1

    # ----- invitations -------------------------------------------------------------
    # A code is valid only while its account is ``invited``; issuing a code, re-binding,
    # disabling and accepting each cancel (delete) every other outstanding code of the
    # account in the same transaction, so at most one code per account is ever live.
    _LIVE = (
        "FROM invitations i JOIN users u ON u.id = i.user_id WHERE i.token_hash = ? "
        "AND i.used_at IS NULL AND i.expires_at > ? AND u.status = 'invited'"
    )

    def issue_invitation(
        self,
        *,
        user_id: str,
        token_hash: str,
        created_by: str,
        expires_at: float,
        roles: frozenset[str],
        rebind: bool = False,
    ) -> int:
        """Give an ``invited`` account a new code with ``roles``, cancelling its older
        codes; the number cancelled. With ``rebind`` the account (in any state) first
        loses every credential and returns to ``invited``, in the same transaction.
        ConflictError if the account is not ``invited`` (and not re-bound)."""
        with self._tx() as tx:
            if rebind:
                tx.rc(
                    "DELETE FROM totp_used_steps WHERE credential_id IN "
                    "(SELECT id FROM credentials WHERE user_id = ?)",
                    (user_id,),
                )
                tx.rc("DELETE FROM credentials WHERE user_id = ?", (user_id,))
                tx.rc("UPDATE users SET status = 'invited' WHERE id = ?", (user_id,))
            if not tx.rc(
                "UPDATE users SET roles = ? WHERE id = ? AND status = 'invited'",
                (",".join(sorted(roles)), user_id),
            ):
                raise ConflictError("The account is no longer waiting for its invitation.")
            cancelled = tx.rc(
                "DELETE FROM invitations WHERE user_id = ? AND used_at IS NULL", (user_id,)
            )
            tx.q(
                "INSERT INTO invitations (token_hash, user_id, created_by, expires_at, used_at) "
                "VALUES (?,?,?,?,NULL)",
                (token_hash, user_id, created_by, expires_at),
            )
        return cancelled

    def disable_user(self, *, user_id: str) -> int:
        """Set the account ``disabled`` and cancel its outstanding codes; the number
        cancelled."""
        with self._tx() as tx:
            if not tx.rc("UPDATE users SET status = 'disabled' WHERE id = ?", (user_id,)):
                raise NotFoundError("No such user.")
            return tx.rc(
                "DELETE FROM invitations WHERE user_id = ? AND used_at IS NULL", (user_id,)
            )

    def peek_invitation(self, *, token_hash: str, now: float) -> str | None:
        """The invited user's id if the code is live (unused, unexpired, its account
        still ``invited``); None otherwise."""
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT i.user_id {self._LIVE}", (token_hash, now))
        return str(rows[0][0]) if rows else None

    def invitation_refusal(self, *, token_hash: str, now: float) -> str:
        """Why a code is not live, for the audit log only (never shown to the caller)."""
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT i.used_at, i.expires_at, u.status FROM invitations i "
                "JOIN users u ON u.id = i.user_id WHERE i.token_hash = ?",
                (token_hash,),
            )
        if not rows:
            return "unknown or cancelled"
        used_at, expires_at, status = rows[0]
        if used_at is not None:
            return "used"
        if float(expires_at) <= now:
            return "expired"
        return f"account {status}"

    def accept_invitation(
        self, *, token_hash: str, user_id: str, now: float, cred_id: str, password_hash: bytes
    ) -> bool:
        """Consume the invitation, set the user's password and activate the user, all in
        one transaction; False (nothing changed) unless the code is live for ``user_id``.
        The account's other outstanding codes are cancelled with it."""
        with self._tx() as tx:
            if not tx.rc(
                "UPDATE invitations SET used_at = ? WHERE token_hash = ? AND user_id = ? "
                "AND used_at IS NULL AND expires_at > ? AND EXISTS "
                "(SELECT 1 FROM users WHERE id = ? AND status = 'invited')",
                (now, token_hash, user_id, now, user_id),
            ):
                return False
            tx.rc("DELETE FROM invitations WHERE user_id = ? AND used_at IS NULL", (user_id,))
            tx.rc("DELETE FROM credentials WHERE user_id = ? AND kind = 'password'", (user_id,))
            tx.q(
                "INSERT INTO credentials (id, user_id, kind, label, secret, approved, created_at) "
                "VALUES (?, ?, 'password', 'password', ?, 1, ?)",
                (cred_id, user_id, password_hash, now),
            )
            tx.rc("UPDATE users SET status = 'active' WHERE id = ?", (user_id,))
        return True

    # ----- sessions ------------------------------------------------------------------
    _SESS_COLS = (
        "id_hash, user_id, state, csrf, client_ip, created_at, last_seen, auth_time, ended_at"
    )

    @staticmethod
    def _sess(r: Sequence[Any]) -> SessionRecord:
        return SessionRecord(
            id_hash=r[0],
            user_id=r[1],
            state=json.loads(r[2]),
            csrf=r[3],
            client_ip=r[4],
            created_at=float(r[5]),
            last_seen=float(r[6]),
            auth_time=float(r[7]) if r[7] is not None else None,
            ended_at=float(r[8]) if r[8] is not None else None,
        )

    def create_session(self, *, id_hash: str, csrf: str, client_ip: str | None, now: float) -> None:
        with self._tx() as tx:
            tx.q(
                f"INSERT INTO sessions ({self._SESS_COLS}) VALUES (?,NULL,?,?,?,?,?,NULL,NULL)",
                (id_hash, "{}", csrf, client_ip, now, now),
            )

    def get_session(self, *, id_hash: str) -> SessionRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.q(f"SELECT {self._SESS_COLS} FROM sessions WHERE id_hash = ?", (id_hash,))
        return self._sess(rows[0]) if rows else None

    def save_session(
        self,
        *,
        id_hash: str,
        user_id: str | None,
        state: dict[str, Any],
        last_seen: float,
        auth_time: float | None,
    ) -> None:
        with self._tx() as tx:
            tx.rc(
                "UPDATE sessions SET user_id = ?, state = ?, last_seen = ?, auth_time = ? "
                "WHERE id_hash = ? AND ended_at IS NULL",
                (user_id, json.dumps(state, sort_keys=True), last_seen, auth_time, id_hash),
            )

    def rename_session(self, *, old_hash: str, new_hash: str, csrf: str) -> None:
        """Give a live session a new id and CSRF token (after authentication)."""
        with self._tx() as tx:
            tx.rc(
                "UPDATE sessions SET id_hash = ?, csrf = ? WHERE id_hash = ? AND ended_at IS NULL",
                (new_hash, csrf, old_hash),
            )
            tx.rc(
                "UPDATE ceremonies SET session_hash = ? WHERE session_hash = ?",
                (new_hash, old_hash),
            )

    def touch_session(self, *, id_hash: str, now: float) -> None:
        with self._tx() as tx:
            tx.rc("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))

    def end_session(self, *, id_hash: str, now: float) -> bool:
        with self._tx() as tx:
            return (
                tx.rc(
                    "UPDATE sessions SET ended_at = ? WHERE id_hash = ? AND ended_at IS NULL",
                    (now, id_hash),
                )
                == 1
            )

    def purge_sessions(self, *, anonymous_idle_before: float, ended_before: float) -> int:
        """Delete sessions nobody signed in to that are idle since ``anonymous_idle_before``
        and sessions ended before ``ended_before``; the number deleted."""
        with self._tx() as tx:
            return tx.rc(
                "DELETE FROM sessions WHERE (user_id IS NULL AND last_seen < ?) "
                "OR (ended_at IS NOT NULL AND ended_at < ?)",
                (anonymous_idle_before, ended_before),
            )

    def list_sessions(self, *, user_id: str | None = None) -> list[SessionRecord]:
        with self._tx(write=False) as tx:
            if user_id is None:
                rows = tx.q(
                    f"SELECT {self._SESS_COLS} FROM sessions WHERE ended_at IS NULL "
                    "AND user_id IS NOT NULL ORDER BY created_at"
                )
            else:
                rows = tx.q(
                    f"SELECT {self._SESS_COLS} FROM sessions WHERE ended_at IS NULL "
                    "AND user_id = ? ORDER BY created_at",
                    (user_id,),
                )
        return [self._sess(r) for r in rows]

    # ----- WebAuthn ceremonies ---------------------------------------------------------
    def put_challenge(
        self, *, session_hash: str, purpose: str, challenge: bytes, expires_at: float
    ) -> None:
        with self._tx() as tx:
            tx.rc(
                "DELETE FROM ceremonies WHERE session_hash = ? AND purpose = ?",
                (session_hash, purpose),
            )
            tx.q(
                "INSERT INTO ceremonies (session_hash, purpose, challenge, expires_at) "
                "VALUES (?,?,?,?)",
                (session_hash, purpose, challenge, expires_at),
            )

    def take_challenge(self, *, session_hash: str, purpose: str, now: float) -> bytes | None:
        """The pending challenge, removed so it can never be used again; None if expired."""
        with self._tx() as tx:
            rows = tx.q(
                "SELECT challenge, expires_at FROM ceremonies WHERE session_hash = ? "
                "AND purpose = ?",
                (session_hash, purpose),
            )
            tx.rc(
                "DELETE FROM ceremonies WHERE session_hash = ? AND purpose = ?",
                (session_hash, purpose),
            )
        if not rows or float(rows[0][1]) <= now:
            return None
        return bytes(rows[0][0])

    # ----- enclaves and clients -------------------------------------------------------
    def put_enclave(
        self,
        *,
        name: str,
        tier: str,
        display_name: str,
        networks: Sequence[str],
        members: Sequence[tuple[str, str]],
        hub_url: str,
        now: float,
    ) -> tuple[set[str], set[str]]:
        """Create or replace an enclave; returns (members added, members removed).
        Member names must be canonical (``canonical_username``)."""
        if any(canonical_username(u) != u for u, _ in members):
            raise InvalidInputError("Enclave members must be canonical usernames.")
        with self._tx() as tx:
            old = {
                r[0]
                for r in tx.q("SELECT username FROM enclave_members WHERE enclave = ?", (name,))
            }
            tx.rc("DELETE FROM enclave_members WHERE enclave = ?", (name,))
            if (
                tx.rc(
                    "UPDATE enclaves SET tier = ?, display_name = ?, networks = ? WHERE name = ?",
                    (tier, display_name, json.dumps(list(networks)), name),
                )
                == 0
            ):
                tx.q(
                    "INSERT INTO enclaves (name, tier, display_name, networks, hub_url, "
                    "created_at) VALUES (?,?,?,?,?,?)",
                    (name, tier, display_name, json.dumps(list(networks)), hub_url, now),
                )
            for user, role in members:
                tx.q(
                    "INSERT INTO enclave_members (enclave, username, role) VALUES (?,?,?)",
                    (name, user, role),
                )
        new = {u for u, _ in members}
        return new - old, old - new

    def _enclave_rows(self, tx: _Tx, rows: list[tuple[Any, ...]]) -> list[EnclaveRecord]:
        out = []
        for r in rows:
            mem = tx.q(
                "SELECT username, role FROM enclave_members WHERE enclave = ? ORDER BY username",
                (r[0],),
            )
            out.append(
                EnclaveRecord(
                    name=r[0],
                    tier=r[1],
                    display_name=r[2],
                    networks=tuple(json.loads(r[3])),
                    members=tuple((m[0], m[1]) for m in mem),
                    hub_url=r[4],
                    created_at=float(r[5]),
                )
            )
        return out

    def get_enclave(self, *, name: str) -> EnclaveRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT name, tier, display_name, networks, hub_url, created_at FROM enclaves "
                "WHERE name = ?",
                (name,),
            )
            found = self._enclave_rows(tx, rows)
        return found[0] if found else None

    def list_enclaves(self, *, username: str | None = None) -> list[EnclaveRecord]:
        with self._tx(write=False) as tx:
            if username is None:
                rows = tx.q(
                    "SELECT name, tier, display_name, networks, hub_url, created_at FROM enclaves "
                    "ORDER BY name"
                )
            else:
                rows = tx.q(
                    "SELECT e.name, e.tier, e.display_name, e.networks, e.hub_url, e.created_at "
                    "FROM enclaves e JOIN enclave_members m ON m.enclave = e.name "
                    "WHERE m.username = ? ORDER BY e.name",
                    (canonical_username(username),),
                )
            return self._enclave_rows(tx, rows)

    def remove_enclave(self, *, name: str) -> None:
        with self._tx() as tx:
            tx.rc("DELETE FROM enclave_members WHERE enclave = ?", (name,))
            tx.rc("DELETE FROM oidc_clients WHERE enclave = ?", (name,))
            if not tx.rc("DELETE FROM enclaves WHERE name = ?", (name,)):
                raise NotFoundError(f"No enclave named {name!r}.")

    def put_client(
        self,
        *,
        client_id: str,
        secret_hash: str,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str],
        enclave: str | None,
        now: float,
        tier: str | None = None,
    ) -> None:
        with self._tx() as tx:
            tx.rc("DELETE FROM oidc_clients WHERE client_id = ?", (client_id,))
            tx.q(
                "INSERT INTO oidc_clients (client_id, secret_hash, redirect_uris, "
                "post_logout_redirect_uris, enclave, created_at, tier) VALUES (?,?,?,?,?,?,?)",
                (
                    client_id,
                    secret_hash,
                    json.dumps(list(redirect_uris)),
                    json.dumps(list(post_logout_redirect_uris)),
                    enclave,
                    now,
                    tier,
                ),
            )

    def get_client(self, *, client_id: str) -> ClientRecord | None:
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT client_id, secret_hash, redirect_uris, post_logout_redirect_uris, enclave, "
                "tier FROM oidc_clients WHERE client_id = ?",
                (client_id,),
            )
        if not rows:
            return None
        r = rows[0]
        return ClientRecord(
            client_id=r[0],
            secret_hash=r[1],
            redirect_uris=tuple(json.loads(r[2])),
            post_logout_redirect_uris=tuple(json.loads(r[3])),
            enclave=r[4],
            tier=r[5],
        )

    # ----- authorization codes and access tokens ----------------------------------------
    def put_code(self, *, code_hash: str, payload: dict[str, Any], expires_at: float) -> None:
        with self._tx() as tx:
            tx.rc("DELETE FROM auth_codes WHERE expires_at < ?", (expires_at - 7200,))
            tx.rc("DELETE FROM access_tokens WHERE expires_at < ?", (expires_at - 7200,))
            tx.q(
                "INSERT INTO auth_codes (code_hash, payload, expires_at, used) VALUES (?,?,?,0)",
                (code_hash, json.dumps(payload), expires_at),
            )

    def peek_code(self, *, code_hash: str, now: float) -> dict[str, Any] | None:
        """The payload of an unused, unexpired code, without consuming it."""
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT payload FROM auth_codes WHERE code_hash = ? AND used = 0 "
                "AND expires_at > ?",
                (code_hash, now),
            )
        if not rows:
            return None
        payload: dict[str, Any] = json.loads(rows[0][0])
        return payload

    def redeem_code(
        self,
        *,
        code_hash: str,
        now: float,
        token_hash: str,
        token_payload: dict[str, Any],
        token_expires_at: float,
    ) -> bool:
        """Consume the code and store the access token in one commit; False if lost."""
        with self._tx() as tx:
            if not tx.rc(
                "UPDATE auth_codes SET used = 1 WHERE code_hash = ? AND used = 0 "
                "AND expires_at > ?",
                (code_hash, now),
            ):
                return False
            tx.q(
                "INSERT INTO access_tokens (token_hash, payload, expires_at) VALUES (?,?,?)",
                (token_hash, json.dumps(token_payload), token_expires_at),
            )
        return True

    def take_code(self, *, code_hash: str, now: float) -> dict[str, Any] | None:
        """The code's payload exactly once, if it has not expired."""
        with self._tx() as tx:
            rows = tx.q(
                "SELECT payload, expires_at FROM auth_codes WHERE code_hash = ? AND used = 0",
                (code_hash,),
            )
            if not rows:
                return None
            tx.rc("UPDATE auth_codes SET used = 1 WHERE code_hash = ?", (code_hash,))
            tx.rc("DELETE FROM auth_codes WHERE expires_at < ?", (now - 3600,))
        if float(rows[0][1]) <= now:
            return None
        payload: dict[str, Any] = json.loads(rows[0][0])
        return payload

    def put_access_token(
        self, *, token_hash: str, payload: dict[str, Any], expires_at: float
    ) -> None:
        with self._tx() as tx:
            tx.q(
                "INSERT INTO access_tokens (token_hash, payload, expires_at) VALUES (?,?,?)",
                (token_hash, json.dumps(payload), expires_at),
            )

    def get_access_token(self, *, token_hash: str, now: float) -> dict[str, Any] | None:
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT payload FROM access_tokens WHERE token_hash = ? AND expires_at > ?",
                (token_hash, now),
            )
        if not rows:
            return None
        payload: dict[str, Any] = json.loads(rows[0][0])
        return payload

    def revoke_user_tokens(self, *, user_id: str, enclave: str | None = None) -> None:
        with self._tx() as tx:
            for th, payload in tx.q("SELECT token_hash, payload FROM access_tokens"):
                p = json.loads(payload)
                if p.get("user_id") == user_id and (enclave is None or p.get("enclave") == enclave):
                    tx.rc("DELETE FROM access_tokens WHERE token_hash = ?", (th,))

    # ----- per-IP failures -------------------------------------------------------------
    def add_ip_failure(self, *, ip: str, now: float, window_s: float) -> int:
        """Record one failure from ``ip``; the count within the window, this one included."""
        with self._tx() as tx:
            tx.q("INSERT INTO ip_failures (ip, at) VALUES (?, ?)", (ip, now))
            tx.rc("DELETE FROM ip_failures WHERE ip = ? AND at < ?", (ip, now - window_s))
            tx.rc("DELETE FROM ip_failures WHERE at < ?", (now - 86400,))
            rows = tx.q(
                "SELECT COUNT(*) FROM ip_failures WHERE ip = ? AND at >= ?", (ip, now - window_s)
            )
        return int(rows[0][0])

    def count_ip_failures(self, *, ip: str, now: float, window_s: float) -> int:
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT COUNT(*) FROM ip_failures WHERE ip = ? AND at >= ?", (ip, now - window_s)
            )
        return int(rows[0][0])

    # ----- signing keys -------------------------------------------------------------------
    def add_signing_key(self, *, kid: str, sealed: bytes, now: float) -> None:
        with self._tx() as tx:
            tx.q(
                "INSERT INTO signing_keys (kid, sealed, created_at, retired_at) "
                "VALUES (?,?,?,NULL)",
                (kid, sealed, now),
            )

    def list_signing_keys(self) -> list[tuple[str, bytes, float, float | None]]:
        with self._tx(write=False) as tx:
            rows = tx.q(
                "SELECT kid, sealed, created_at, retired_at FROM signing_keys "
                "ORDER BY created_at DESC"
            )
        return [
            (r[0], bytes(r[1]), float(r[2]), float(r[3]) if r[3] is not None else None)
            for r in rows
        ]

    def retire_signing_key(self, *, kid: str, now: float) -> None:
        with self._tx() as tx:
            tx.rc(
                "UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL",
                (now, kid),
            )

    def reseal_all(self, *, reseal: Any) -> int:
        """Re-encrypt every sealed blob under the first key: ``reseal(blob, context)``."""
        n = 0
        with self._tx() as tx:
            for cid, blob in tx.q("SELECT id, secret FROM credentials WHERE kind = 'totp'"):
                tx.rc(
                    "UPDATE credentials SET secret = ? WHERE id = ?",
                    (reseal(bytes(blob), f"totp:{cid}"), cid),
                )
                n += 1
            for kid, blob in tx.q("SELECT kid, sealed FROM signing_keys"):
                tx.rc(
                    "UPDATE signing_keys SET sealed = ? WHERE kid = ?",
                    (reseal(bytes(blob), f"signing-key:{kid}"), kid),
                )
                n += 1
        return n


def open_store(*, url: str, migrate: bool = False) -> IdentityStore:
    """Open (and create if needed) the identity store at ``url``; with ``migrate``,
    apply pending schema steps to an existing store (see ``IdentityStore._schema``)."""
    return IdentityStore(url=url, migrate=migrate)
