"""The identity store's row types and the transaction its parts share.

Used by ``auth._store`` and its parts (``_store_users``, ``_store_sessions``,
``_store_oidc``); holds no SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "ClientRecord",
    "Credential",
    "EnclaveRecord",
    "SessionRecord",
    "StoreParts",
    "Tx",
    "User",
]


class Tx(Protocol):
    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def rc(self, sql: str, params: Sequence[Any] = ()) -> int: ...


class StoreParts:
    """What every part of ``IdentityStore`` uses: a transaction, and the backend."""

    _pg: Any  # the PostgreSQL connection, None on SQLite

    def _tx(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        raise NotImplementedError


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
