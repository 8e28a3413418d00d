"""OpenID Connect provider pieces: signing keys (JWKS, rotation), ID tokens, PKCE.

The HTTP endpoints live in ``_app``; this module holds the parts that must be
right regardless of transport:
  1. RS256 signing keys are generated here, sealed at rest, published as a JWKS (the
     JWS and JWK formats are joserfc's);
     rotation adds a new key that signs from then on and keeps retired keys in the
     JWKS for ``retired_grace_s`` so tokens already issued still verify.
  2. PKCE: only S256, verifier 43-128 characters of the RFC 7636 alphabet.
  3. Client secrets are random and stored as SHA-256; compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import RSAKey

from ._crypto import KeyRing, new_token
from ._errors import InvalidInputError
from ._store import IdentityStore

__all__ = ["SigningKeys", "b64url", "pkce_s256_matches", "validate_code_verifier"]

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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
    jwk: RSAKey  # the private key as joserfc's JWK, with kid, use=sig, alg=RS256
    created_at: float
    retired_at: float | None


def _jwk(kid: str, private: rsa.RSAPrivateKey) -> RSAKey:
    return RSAKey.import_key(private, {"kid": kid, "use": "sig", "alg": "RS256"})


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
                keys.append(_Key(kid, known.jwk, created, retired))
                continue
            pem = self._keyring.open(sealed=sealed, context=f"signing-key:{kid}")
            priv = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(priv, rsa.RSAPrivateKey):
                raise InvalidInputError(f"Signing key {kid} is not an RSA key.")
            keys.append(_Key(kid, _jwk(kid, priv), created, retired))
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
            out.append(k.jwk.as_dict(private=False))
        return {"keys": out}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS (RS256, the active key's ``kid``) of ``claims``, by joserfc."""
        key = self._active()
        header = {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
        return jwt.encode(header, dict(claims), key.jwk, algorithms=["RS256"])

    def _key(self, kid: object) -> RSAKey:
        """The key named ``kid``, re-reading the list once for one rotated elsewhere."""
        for attempt in (0, 1):
            if attempt:
                self.reload()
            with self._lock:
                for k in self._keys:
                    if k.kid == kid:
                        return k.jwk
        raise InvalidInputError("The token was not signed by a key of this provider.")

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a token this provider signed (signature only; callers check times).
        The JWS is joserfc's, with RS256 the only algorithm allowed."""
        if len(token) > 16384 or token.count(".") != 2:
            raise InvalidInputError("The token is not a compact JWS.")
        try:
            claims = jwt.decode(
                token, lambda obj: self._key(obj.headers().get("kid")), algorithms=["RS256"]
            ).claims
        except UnsupportedAlgorithmError:
            raise InvalidInputError("The token is not RS256.") from None
        except BadSignatureError:
            raise InvalidInputError("The token's signature does not verify.") from None
        except (JoseError, ValueError, TypeError):
            raise InvalidInputError(
                "The token is not valid base64url JSON with object claims."
            ) from None
        return claims
