"""Enclaves, OIDC clients, authorization codes, access tokens, signing keys.

Part of ``IdentityStore`` (``auth._store``), which owns the connection and schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._errors import InvalidInputError, NotFoundError
from ._names import canonical_username
from ._store_base import (
    ClientRecord,
    EnclaveRecord,
    StoreParts,
    Tx,
)

__all__ = ["EnclavesAndOidc"]


class EnclavesAndOidc(StoreParts):
    """The EnclavesAndOidc half of the identity store."""

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

    def _enclave_rows(self, tx: Tx, rows: list[tuple[Any, ...]]) -> list[EnclaveRecord]:
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
