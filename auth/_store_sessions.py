"""Sign-in sessions and the WebAuthn ceremonies bound to them.

Part of ``IdentityStore`` (``auth._store``), which owns the connection and schema.
"""

# ruff: noqa: S608  (f-strings only splice the constant column lists; values are bound)
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._store_base import (
    SessionRecord,
    StoreParts,
)

__all__ = ["SessionsAndCeremonies"]


class SessionsAndCeremonies(StoreParts):
    """The SessionsAndCeremonies half of the identity store."""

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
