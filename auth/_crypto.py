"""Secret material at rest: AES-GCM under a rotatable key list, argon2id, token hashes.

1. Secrets (TOTP seeds, signing keys) are sealed with AES-256-GCM; the associated
   data binds each ciphertext to its row, so a ciphertext moved to another row fails.
2. The key list is ordered: the first key seals, every key opens (rotation).
3. Passwords are hashed with argon2id; high-entropy tokens (sessions, invitations,
   client secrets, codes) are stored as SHA-256 only and compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import argon2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._errors import KeyRingError

__all__ = [
    "Argon2Params",
    "KeyRing",
    "KeyRingError",
    "PasswordHasher",
    "hash_token",
    "new_token",
    "tokens_equal",
]

_VERSION = 1


@dataclass(frozen=True)
class KeyRing:
    """Ordered AES-256 keys ``(kid, key)``; the first one seals."""

    keys: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyRingError("The key ring is empty; at least one 32-byte key is required.")
        for kid, key in self.keys:
            if not kid or len(kid.encode()) > 64 or ":" in kid:
                raise KeyRingError(f"Key id {kid!r} must be 1-64 bytes without ':'.")
            if len(key) != 32:
                raise KeyRingError(f"Key {kid!r} must be exactly 32 bytes.")

    @classmethod
    def generate(cls, *, kid: str = "k1") -> KeyRing:
        return cls(keys=((kid, AESGCM.generate_key(bit_length=256)),))

    @classmethod
    def from_file(cls, *, path: Path) -> KeyRing:
        """One ``kid:base64(32 bytes)`` per line; blank lines and ``#`` comments ignored."""
        keys: list[tuple[str, bytes]] = []
        for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            kid, sep, b64 = line.partition(":")
            if not sep:
                raise KeyRingError(f"{path}:{n}: expected 'kid:base64key'.")
            try:
                key = base64.b64decode(b64, validate=True)
            except ValueError:
                raise KeyRingError(f"{path}:{n}: the key is not valid base64.") from None
            keys.append((kid.strip(), key))
        return cls(keys=tuple(keys))

    def to_text(self) -> str:
        return "".join(f"{kid}:{base64.b64encode(k).decode()}\n" for kid, k in self.keys)

    def seal(self, *, plaintext: bytes, context: str) -> bytes:
        kid, key = self.keys[0]
        nonce = os.urandom(12)
        ct = AESGCM(key).encrypt(nonce, plaintext, context.encode())
        k = kid.encode()
        return bytes([_VERSION, len(k)]) + k + nonce + ct

    def open(self, *, sealed: bytes, context: str) -> bytes:
        if len(sealed) < 2 or sealed[0] != _VERSION:
            raise KeyRingError("A sealed secret has an unknown format.")
        klen = sealed[1]
        kid = sealed[2 : 2 + klen].decode()
        nonce = sealed[2 + klen : 14 + klen]
        ct = sealed[14 + klen :]
        for k_id, key in self.keys:
            if k_id == kid:
                try:
                    return AESGCM(key).decrypt(nonce, ct, context.encode())
                except InvalidTag:
                    raise KeyRingError("A sealed secret failed its integrity check.") from None
        raise KeyRingError(f"No key {kid!r} in the key ring; was it removed before re-sealing?")

    def needs_reseal(self, *, sealed: bytes) -> bool:
        klen = sealed[1]
        return sealed[2 : 2 + klen].decode() != self.keys[0][0]


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost. Defaults: RFC 9106 second recommendation (t=3, 64 MiB, p=4)."""

    time_cost: int = 3
    memory_cost_kib: int = 65536
    parallelism: int = 4


class PasswordHasher:
    """argon2id hashing and verification; rehash detection when parameters change."""

    def __init__(self, *, params: Argon2Params | None = None) -> None:
        self.params = params or Argon2Params()
        self._h = argon2.PasswordHasher(
            time_cost=self.params.time_cost,
            memory_cost=self.params.memory_cost_kib,
            parallelism=self.params.parallelism,
            type=argon2.Type.ID,
        )
        self._dummy = self._h.hash(secrets.token_urlsafe(16))

    def hash(self, *, password: str) -> str:
        return self._h.hash(password)

    def verify(self, *, stored: str, password: str) -> bool:
        try:
            return bool(self._h.verify(stored, password))
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def burn(self, *, password: str) -> None:
        """Spend the same time as a real verification (unknown users)."""
        self.verify(stored=self._dummy, password=password)


def new_token(*, nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
