"""Users, their credentials and throttles, and invitations: one aggregate.

Part of ``IdentityStore`` (``auth._store``), which owns the connection and schema.
"""

# ruff: noqa: S608  (f-strings only splice the constant column lists; values are bound)
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._errors import ConflictError, InvalidInputError, NotFoundError
from ._names import canonical_username
from ._store_base import (
    Credential,
    StoreParts,
    User,
)

__all__ = ["UsersAndCredentials"]


class UsersAndCredentials(StoreParts):
    """The UsersAndCredentials half of the identity store."""

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
