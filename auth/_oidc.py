"""OpenID Connect provider pieces: signing keys (JWKS, rotation), ID tokens, PKCE.

The HTTP endpoints live in ``_app``; this module holds the parts that must be
right regardless of transport:
  1. RS256 signing keys are generated here, sealed at rest, published as a JWKS;
     rotation adds a new key that signs from then on and keeps retired keys in the
     JWKS for ``retired_grace_s`` so tokens already issued still verify.
  2. PKCE: only S256, verifier 43-128 characters of the RFC 7636 alphabet.
  3. Client secrets are random and stored as SHA-256; compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._crypto import KeyRing, new_token
from ._errors import InvalidInputError
from ._store import IdentityStore

__all__ = ["SigningKeys", "b64url", "pkce_s256_matches", "validate_code_verifier"]

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def validate_code_verifier(verifier: str) -> None:
    if not _VERIFIER.match(verifier):
        raise InvalidInputError(
            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)."
        )


def pkce_s256_matches(*, verifier: str, challenge: str) -> bool:
    import hmac

    computed = b64url(hashlib.sha256(verifier.encode()).digest())
    return hmac.compare_digest(computed.encode(), challenge.encode())


@dataclass(frozen=True)
class _Key:
    kid: str
    private: rsa.RSAPrivateKey
    created_at: float
    retired_at: float | None


class SigningKeys:
    """The provider's RS256 keys, loaded from and persisted to the store."""

    def __init__(
        self,
        *,
        store: IdentityStore,
        keyring: KeyRing,
        clock: Callable[[], float] = time.time,
        retired_grace_s: int = 86400,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock
        self._grace = retired_grace_s
        self._lock = threading.Lock()
        self._keys: list[_Key] = []
        self._loaded_at = 0.0
        self.reload()
        if not any(k.retired_at is None for k in self._keys):
            self.rotate()

    def reload(self) -> None:
        """Re-read the key list (other portal processes may have rotated); unseal new keys only."""
        with self._lock:
            cached = {k.kid: k for k in self._keys}
        keys = []
        for kid, sealed, created, retired in self._store.list_signing_keys():
            known = cached.get(kid)
            if known is not None:
                keys.append(_Key(kid, known.private, created, retired))
                continue
            pem = self._keyring.open(sealed=sealed, context=f"signing-key:{kid}")
            priv = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(priv, rsa.RSAPrivateKey):
                raise InvalidInputError(f"Signing key {kid} is not an RSA key.")
            keys.append(_Key(kid, priv, created, retired))
        with self._lock:
            self._keys = keys
            self._loaded_at = time.monotonic()

    def rotate(self) -> str:
        """Create a new signing key; the previous active key is retired (kept for grace)."""
        now = self._clock()
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = priv.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        kid = new_token(nbytes=12)
        for k in self._keys:
            if k.retired_at is None:
                self._store.retire_signing_key(kid=k.kid, now=now)
        self._store.add_signing_key(
            kid=kid, sealed=self._keyring.seal(plaintext=pem, context=f"signing-key:{kid}"), now=now
        )
        self.reload()
        return kid

    def _active(self) -> _Key:
        if time.monotonic() - self._loaded_at > 30:
            self.reload()  # pick up a rotation done by another process
        with self._lock:
            for k in self._keys:
                if k.retired_at is None:
                    return k
        raise InvalidInputError("No active signing key.")

    def jwks(self) -> dict[str, Any]:
        self.reload()  # every process publishes every key, whoever rotated
        now = self._clock()
        out = []
        with self._lock:
            keys = list(self._keys)
        for k in keys:
            if k.retired_at is not None and k.retired_at + self._grace < now:
                continue
            nums = k.private.public_key().public_numbers()
            out.append(
                {
                    "kty": "RSA",
                    "use": "sig",
                    "alg": "RS256",
                    "kid": k.kid,
                    "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
                    "e": b64url(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")),
                }
            )
        return {"keys": out}

    def sign(self, claims: Mapping[str, Any]) -> str:
        key = self._active()
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False).encode())
        )
        sig = key.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token this provider signed (signature only; callers check times)."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > 16384:
            raise InvalidInputError("The token is not a compact JWS.")
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
            sig = _unb64url(parts[2])
        except ValueError:
            raise InvalidInputError("The token is not valid base64url JSON.") from None
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise InvalidInputError("The token is not RS256.")
        with self._lock:
            keys = {k.kid: k for k in self._keys}
        key = keys.get(str(header.get("kid")))
        if key is None:
            self.reload()
            with self._lock:
                key = {k.kid: k for k in self._keys}.get(str(header.get("kid")))
        if key is None:
            raise InvalidInputError("The token was not signed by a key of this provider.")
        try:
            key.private.public_key().verify(
                sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise InvalidInputError("The token's signature does not verify.") from None
        if not isinstance(claims, dict):
            raise InvalidInputError("The token's claims are not an object.")
        return claims
