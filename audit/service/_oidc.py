"""Officer sign-in through the portal's OpenID Connect provider (a relying party).

DESIGN.md: the audit UI is an OIDC client of the portal. The portal proves who the
officer is and which factors they used; this module decides whether that is enough
to read everyone's access records.

Security procedure (``OidcLogin.begin`` / ``OidcLogin.finish``):

1. ``begin``: make a fresh ``state`` (32 random bytes), ``nonce`` (32 random bytes) and
   PKCE ``code_verifier`` (64 random bytes, S256 challenge). They are kept in the
   browser that started the sign-in, never in a server-side table that others' starts
   could flush (issue #12, item 6): sealed with AES-256-GCM under a key made when the
   service starts, with the time they were made, into the cookie value
   (``enclave_audit_oidc``, HttpOnly, Secure, SameSite=Lax so the top-level redirect
   back from the portal carries it), valid for ``pending_ttl`` seconds. The browser is
   sent to the portal's authorization endpoint with the exact registered
   ``redirect_uri`` (configured, never derived from the request's Host header).
2. ``finish``: open the cookie (a forged, altered, expired or other instance's cookie
   is no sign-in); refuse without one. Single use: the cookie's SHA-256 is remembered
   as spent until it expires, whether the rest succeeds or not (at most
   ``_MAX_SPENT`` remembered; the oldest go first, and a cookie that old replayed
   still needs a fresh code the portal issued for its PKCE challenge).
3. Refuse an ``error`` answer from the portal, and a ``state`` that differs from the
   pending one (``hmac.compare_digest``).
4. Redeem the code at the token endpoint with client authentication
   (``client_secret_basic``; the secret is read from its file now, never from argv)
   and the ``code_verifier``.
5. Verify the ID token (``verify_id_token``, the JWS by joserfc): compact JWS, ``alg``
   RS256 only, a ``kid`` from the issuer's JWKS (fetched again once for an unknown
   ``kid``, for rotation), the RSA signature, ``iss`` equal to the configured issuer,
   ``aud`` containing the client id (and ``azp`` equal to it when there are several
   audiences), ``exp`` in the future and ``iat`` not in the future (60 s leeway),
   ``nonce`` equal to the pending one.
6. Decide (``officer_decision``): the ``roles`` claim must hold the required role
   (``officer``); ``preferred_username`` must be a plain name; the token's
   ``enclave_factors``/``amr``/``acr``/``enclave_approved`` must satisfy every rule of
   the minimum tier that claims carry (user verification, officer approval,
   device-bound key, biometric, assurance level) through ``policies.evaluate_claims``.
   Any missing or malformed claim refuses (fail closed); ``enclave_approved`` missing
   or not a boolean counts as not approved.
7. The caller MUST record the outcome (``auth.factor.verified`` or
   ``auth.factor.failed`` with ``factor=oidc``) durably before it creates the officer
   session or shows the refusal, and MUST use the portal username as the officer
   identity recorded by every later ``audit.read``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jws, jwt
from joserfc.errors import BadSignatureError, JoseError, UnsupportedAlgorithmError
from joserfc.jwk import GuestProtocol, RSAKey

from ..files import secret_file_problem

__all__ = [
    "DEFAULT_MIN_TIER",
    "OfficerDecision",
    "OidcConfig",
    "OidcError",
    "OidcLogin",
    "Pending",
    "officer_decision",
    "pkce_challenge",
    "verify_id_token",
]

#: Officers see every researcher's access records for every enclave, including
#: ``nbdc-high`` ones, so by default reading them needs at least what entering an
#: ``nbdc-high`` enclave needs (two categories, a phishing-resistant authenticator).
DEFAULT_MIN_TIER = "nbdc-high"
_LEEWAY = 60
_SEAL_AAD = b"enclave-audit-oidc-pending/v1"
_MAX_SPENT = 10_000
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class OidcError(Exception):
    """A sign-in through the portal was refused; ``reason`` is one sentence for the page
    and the audit record, ``username`` who it was when the token said so."""

    def __init__(self, reason: str, *, username: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.username = username


@dataclass(frozen=True)
class OidcConfig:
    """Where the portal is and who this service is to it."""

    issuer: str
    client_id: str
    client_secret_file: Path
    redirect_uri: str
    min_tier: str = DEFAULT_MIN_TIER
    required_role: str = "officer"
    pending_ttl: float = 600.0
    http_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError("the OIDC issuer must be an http(s) URL")
        if not self.client_id:
            raise ValueError("the OIDC client id must not be empty")
        if not self.redirect_uri.startswith(("https://", "http://")):
            raise ValueError("the OIDC redirect URI must be an http(s) URL")

    @staticmethod
    def check_secret_file(path: Path) -> str | None:
        """Why the client secret file cannot be used (one sentence), or None."""
        return secret_file_problem(path, what="OIDC client secret")


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    verifier: str
    created: float


@dataclass(frozen=True)
class OfficerDecision:
    allowed: bool
    username: str | None
    reasons: tuple[str, ...]
    aal: int = 0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _alg(token: str) -> object:
    """The ``alg`` a token's header claims, for the refusal message only."""
    try:
        return jws.extract_compact(token.encode("ascii")).headers().get("alg")
    except (JoseError, ValueError, UnicodeError):
        return None


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(verifier))."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def verify_id_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """Step 5: the verified claims of ``token``, or ``OidcError`` saying what was wrong.

    ``jwks`` is the issuer's JSON Web Key Set; an unknown ``kid`` raises ``OidcError``
    whose reason starts with "unknown signing key" (the caller may refetch once). The
    JWS itself (compact form, base64url, the RS256 signature) is joserfc's; the key is
    the JWKS entry with the token's ``kid``, and only RS256 is allowed."""
    if len(token) > 16384 or token.count(".") != 2:
        raise OidcError("the ID token is not a compact JWS")

    def key_for(obj: GuestProtocol) -> RSAKey:
        kid = obj.headers().get("kid")
        keys = [
            k
            for k in jwks.get("keys", [])
            if isinstance(k, dict) and k.get("kty") == "RSA" and k.get("kid") == kid
        ]
        if not keys:
            raise OidcError("unknown signing key: the ID token's kid is not in the issuer's JWKS")
        try:
            return RSAKey.import_key(keys[0])
        except (JoseError, ValueError, KeyError, TypeError):
            raise OidcError("the ID token's signature does not verify") from None

    try:
        claims = jwt.decode(token, key_for, algorithms=["RS256"]).claims
    except UnsupportedAlgorithmError:
        raise OidcError(f"the ID token's algorithm {_alg(token)!r} is not RS256") from None
    except BadSignatureError:
        raise OidcError("the ID token's signature does not verify") from None
    except (JoseError, ValueError, TypeError):
        raise OidcError("the ID token is not valid base64url JSON with object claims") from None
    if claims.get("iss") != issuer:
        raise OidcError("the ID token was issued by another issuer")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in auds:
        raise OidcError("the ID token was issued for another client (audience)")
    if len(auds) > 1 and claims.get("azp") != client_id:
        raise OidcError("the ID token has several audiences and azp is not this client")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + _LEEWAY < now:
        raise OidcError("the ID token has expired")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or iat - _LEEWAY > now:
        raise OidcError("the ID token's issue time is in the future")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise OidcError("the ID token's nonce does not match this sign-in")
    return claims


def officer_decision(
    claims: Mapping[str, Any], *, required_role: str, min_tier: str
) -> OfficerDecision:
    """Step 6: may the holder of these verified claims read the audit log?"""
    from policies import evaluate_claims, load_catalog

    reasons: list[str] = []
    username = claims.get("preferred_username")
    if not isinstance(username, str) or not _USERNAME.match(username):
        return OfficerDecision(False, None, ("the ID token names no valid portal username",))
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        reasons.append("the ID token carries no roles claim")
    elif required_role not in roles:
        reasons.append(f"the portal user {username} does not hold the {required_role} role")
    factors, amr, acr = claims.get("enclave_factors"), claims.get("amr"), claims.get("acr")
    if (
        not isinstance(factors, list)
        or not isinstance(amr, list)
        or not isinstance(acr, str)
        or not all(isinstance(x, str) for x in [*factors, *amr])
    ):
        reasons.append("the ID token does not say which factors were used")
        return OfficerDecision(False, username, tuple(reasons))
    tier = load_catalog().get(min_tier)
    decision = evaluate_claims(
        tier=tier,
        enclave_factors=factors,
        amr=amr,
        acr=acr,
        approved=claims.get("enclave_approved") is True,
    )
    if not decision.allowed:
        reasons.extend(f"{r} (audit UI minimum tier {min_tier})" for r in decision.reasons)
    return OfficerDecision(not reasons, username, tuple(reasons), decision.aal)


@dataclass
class OidcLogin:
    """The relying party: sealed pending sign-ins, discovery and JWKS caches, the code
    exchange."""

    config: OidcConfig
    _seal_key: bytes = field(default_factory=lambda: AESGCM.generate_key(bit_length=256))
    #: SHA-256 of finished cookies -> when they would have expired (wall clock)
    _spent: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _discovery: dict[str, Any] | None = None
    _jwks: dict[str, Any] | None = None

    # -- step 1 -------------------------------------------------------------------------
    def begin(self) -> tuple[str, str]:
        """A new pending sign-in: (cookie value, authorization URL at the portal)."""
        p = Pending(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),
            created=time.time(),
        )
        cookie = self._seal(p)
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": self.config.redirect_uri,
            "scope": "openid profile",
            "state": p.state,
            "nonce": p.nonce,
            "code_challenge": pkce_challenge(p.verifier),
            "code_challenge_method": "S256",
        }
        endpoint = str(self.discovery()["authorization_endpoint"])
        sep = "&" if "?" in endpoint else "?"
        return cookie, endpoint + sep + urlencode(query)

    # -- steps 2-6 ------------------------------------------------------------------------
    def finish(
        self, *, cookie: str | None, state: str, code: str, error: str
    ) -> tuple[OfficerDecision, dict[str, Any]]:
        """Blocking (HTTP to the portal): the decision and the verified claims."""
        pending = self._open(cookie) if cookie else None
        if pending is None or not self._spend(cookie or "", pending):
            raise OidcError("this sign-in was not started here or has expired; start again")
        if error:
            raise OidcError(f"the portal refused the sign-in: {error[:100]}")
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("the sign-in's state does not match; start again")
        if not code:
            raise OidcError("the portal returned no authorization code")
        id_token = self._redeem(code=code, verifier=pending.verifier)
        claims = self._verify(id_token, nonce=pending.nonce)
        decision = officer_decision(
            claims, required_role=self.config.required_role, min_tier=self.config.min_tier
        )
        return decision, claims

    # -- the pending sign-in, sealed into its cookie (step 1) and opened once (step 2) ---
    def _seal(self, p: Pending) -> str:
        plain = json.dumps(
            {"s": p.state, "n": p.nonce, "v": p.verifier, "t": p.created}, separators=(",", ":")
        ).encode("ascii")
        iv = secrets.token_bytes(12)
        return _b64url(iv + AESGCM(self._seal_key).encrypt(iv, plain, _SEAL_AAD))

    def _open(self, cookie: str) -> Pending | None:
        if len(cookie) > 1024:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            plain = AESGCM(self._seal_key).decrypt(raw[:12], raw[12:], _SEAL_AAD)
            d = json.loads(plain)
            p = Pending(state=d["s"], nonce=d["n"], verifier=d["v"], created=float(d["t"]))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None
        age = time.time() - p.created
        return p if 0 <= age <= self.config.pending_ttl else None

    def _spend(self, cookie: str, p: Pending) -> bool:
        """Mark ``cookie`` used; False when it already was."""
        key, now = _digest(cookie), time.time()
        with self._lock:
            while self._spent and next(iter(self._spent.values())) < now:
                self._spent.pop(next(iter(self._spent)))  # roughly oldest first
            if key in self._spent:
                return False
            while len(self._spent) >= _MAX_SPENT:
                self._spent.pop(next(iter(self._spent)))
            self._spent[key] = p.created + self.config.pending_ttl
            return True

    def _secret(self) -> str:
        problem = OidcConfig.check_secret_file(self.config.client_secret_file)
        if problem is not None:
            raise OidcError("this service cannot authenticate to the portal; tell the operator")
        return self.config.client_secret_file.read_text(encoding="utf-8").strip()

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            r = httpx.get(url, timeout=self.config.http_timeout)
            r.raise_for_status()
            data = r.json()
        except (httpx.HTTPError, ValueError):
            raise OidcError("the portal could not be reached; try again later") from None
        if not isinstance(data, dict):
            raise OidcError("the portal answered something that is not a JSON object")
        return data

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            d = self._get_json(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if d.get("issuer") != self.config.issuer:
                raise OidcError("the portal's discovery document names another issuer")
            self._discovery = d
        return self._discovery

    def _redeem(self, *, code: str, verifier: str) -> str:
        endpoint = str(self.discovery()["token_endpoint"])
        try:
            r = httpx.post(
                endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.config.redirect_uri,
                    "code_verifier": verifier,
                },
                auth=(self.config.client_id, self._secret()),
                timeout=self.config.http_timeout,
            )
        except httpx.HTTPError:
            raise OidcError("the portal could not be reached; try again later") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or not isinstance(body, dict):
            why = body.get("error_description") if isinstance(body, dict) else None
            raise OidcError(f"the portal refused the code: {str(why or r.status_code)[:200]}")
        token = body.get("id_token")
        if not isinstance(token, str):
            raise OidcError("the portal returned no ID token")
        return token

    def _verify(self, token: str, *, nonce: str) -> dict[str, Any]:
        for attempt in (0, 1):
            if self._jwks is None or attempt == 1:
                self._jwks = self._get_json(str(self.discovery()["jwks_uri"]))
            try:
                return verify_id_token(
                    token,
                    jwks=self._jwks,
                    issuer=self.config.issuer,
                    client_id=self.config.client_id,
                    nonce=nonce,
                    now=time.time(),
                )
            except OidcError as e:
                if attempt == 0 and e.reason.startswith("unknown signing key"):
                    continue  # the portal may have rotated its key: fetch the JWKS once more
                raise
        raise OidcError("unknown signing key")  # pragma: no cover - loop always returns/raises


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
