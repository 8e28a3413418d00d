"""The OpenID Connect provider's ceremonies, one keyword-only function per step.

No HTTP here: the web layer (``_app``) parses requests, calls these, and turns
their frozen results and errors into responses. Each refusal is audited here.
  1. ``check_authorization_request``: the client, its exact redirect URI, then the
     protocol parameters (code flow, ``openid`` scope, ``state``, PKCE S256).
  2. ``client_step_up``: what a client that is not a hub does with a sign-in below
     the tier it demands (step up, or refuse).
  3. ``issue_code``: a one-time code bound to the client, redirect URI, PKCE
     challenge and the decision of this sign-in.
  4. ``authenticate_client`` and ``redeem_code``: the token request (RFC 6749
     section 4.1.3 with PKCE); ``userinfo``: the claims behind an access token.
  5. ``rotate_signing_key``: a new key signs from now on (old ones stay in the JWKS).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ._crypto import hash_token, new_token, tokens_equal
from ._errors import AuthError, InvalidInputError
from ._factors import UNKNOWN_CLIENT
from ._oidc import pkce_s256_matches, validate_code_verifier
from ._policy import LoginDecision
from ._portal import Portal
from ._session import SessionLimits, expiry_reason
from ._store import ClientRecord, User

__all__ = [
    "AuthorizationRefusedError",
    "AuthorizationRequest",
    "BearerRefusedError",
    "CodeGrant",
    "OAuthRefusedError",
    "RotatedKey",
    "StepUp",
    "TokenGrant",
    "TokenRefusedError",
    "UserInfo",
    "authenticate_client",
    "check_authorization_request",
    "client_step_up",
    "issue_code",
    "redeem_code",
    "rotate_signing_key",
    "userinfo",
]

#: A well-formed OIDC client_id: printable ASCII, no spaces, at most 128 characters.
CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_NAMED_CLIENT = re.compile(r"[A-Za-z0-9._-]{1,128}")
_BAD_CODE = "The code is unknown, expired or already used."


class OAuthRefusedError(AuthError):
    """A request refused with an OAuth ``error`` code for the client (empty: the
    RFC 6750 case of a request that presented no token at all)."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class AuthorizationRefusedError(OAuthRefusedError):
    """An authorization request refused; the error goes back to the redirect URI."""


class TokenRefusedError(OAuthRefusedError):
    """A token request refused (``invalid_client``: the client did not authenticate)."""


class BearerRefusedError(OAuthRefusedError):
    """A protected-resource request without a usable access token."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request (the query the sign-in returns to)."""

    client: ClientRecord
    redirect_uri: str
    response_type: str
    scope: str
    state: str
    nonce: str
    code_challenge: str
    code_challenge_method: str

    def params(self) -> dict[str, str]:
        """The request's query parameters, as the client sent them."""
        fields = {k: v for k, v in asdict(self).items() if k != "client"}
        return {"client_id": self.client.client_id, **fields}


def count_refusal(
    *,
    portal: Portal,
    action: str,
    actor: str,
    client_ip: str | None,
    details: Mapping[str, Any],
    enclave: str | None = None,
) -> None:
    """Audit a refused OIDC request and count it against the client address (the
    throttle that also counts failed factors)."""
    portal.store.add_ip_failure(
        ip=client_ip if client_ip is not None else UNKNOWN_CLIENT,
        now=portal.clock(),
        window_s=portal.factors.ip_window_s,
    )
    portal.auditor.record(
        action=action,
        actor=actor,
        outcome="failure",
        enclave=enclave,
        client_ip=client_ip,
        details=details,
    )


def check_authorization_request(
    *,
    portal: Portal,
    client_id: str,
    redirect_uri: str,
    response_type: str,
    scope: str,
    state: str,
    nonce: str,
    code_challenge: str,
    code_challenge_method: str,
    client_ip: str | None,
) -> AuthorizationRequest:
    """Steps 1 and 2 of an authorization request.

    1. The client and its exact redirect URI: refused with ``InvalidInputError``
       (never redirected to an unchecked URI), audited and counted against the address.
    2. Protocol parameters: refused with ``AuthorizationRefusedError``, which the
       caller MUST send back to the (now checked) redirect URI.
    """
    portal.factors._ip_precheck(client_ip=client_ip)
    client = portal.store.get_client(client_id=client_id) if CLIENT_ID.match(client_id) else None
    if client is None or redirect_uri not in client.redirect_uris:
        reason = "unknown client_id" if client is None else "unregistered redirect_uri"
        count_refusal(
            portal=portal,
            action="oidc.authorize.refused",
            actor="anonymous",
            client_ip=client_ip,
            details={"client_id": client_id if client else "(unknown)", "reason": reason},
        )
        raise InvalidInputError(
            "Unknown client_id."
            if client is None
            else "redirect_uri is not registered for this client."
        )
    if response_type != "code":
        raise AuthorizationRefusedError(
            "Only response_type=code is supported.", error="unsupported_response_type"
        )
    if "openid" not in scope.split():
        raise AuthorizationRefusedError("scope must include openid.", error="invalid_scope")
    if not state:
        raise AuthorizationRefusedError("state is required.", error="invalid_request")
    if code_challenge_method != "S256" or not (43 <= len(code_challenge) <= 128):
        raise AuthorizationRefusedError(
            "PKCE with code_challenge_method=S256 is required.", error="invalid_request"
        )
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        response_type=response_type,
        scope=scope,
        state=state,
        nonce=nonce,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
    )


class StepUp(enum.Enum):
    """What to do with a sign-in below the tier a (non-hub) client demands."""

    NOT_NEEDED = "not needed"
    STEP_UP = "step up"  # send the user to present another factor
    REFUSE = "refuse"  # nothing more can be proved here (or ``prompt=none``)


def client_step_up(
    *, decision: LoginDecision, enrolled_kinds: frozenset[str], prompt: str
) -> StepUp:
    """A sign-in that meets the client's tier needs nothing; one that does not can step
    up when a second factor is enrolled and the client allows interaction."""
    if decision.allowed:
        return StepUp.NOT_NEEDED
    if enrolled_kinds & {"webauthn", "totp"} and prompt != "none":
        return StepUp.STEP_UP
    return StepUp.REFUSE


@dataclass(frozen=True)
class CodeGrant:
    """What a code is bound to, stored (as JSON) under the code's hash."""

    client_id: str
    redirect_uri: str
    user_id: str
    challenge: str
    nonce: str
    scope: str
    enclave: str | None
    amr: list[str]
    acr: str
    categories: list[str]
    approved: bool
    auth_time: int
    sid: str
    session: str

    @classmethod
    def for_decision(
        cls,
        *,
        request: AuthorizationRequest,
        user: User,
        decision: LoginDecision,
        enclave: str | None,
        session_hash: str,
        auth_time: int,
    ) -> CodeGrant:
        return cls(
            client_id=request.client.client_id,
            redirect_uri=request.redirect_uri,
            user_id=user.id,
            challenge=request.code_challenge,
            nonce=request.nonce,
            scope=request.scope,
            enclave=enclave,
            amr=list(decision.amr),
            acr=decision.acr,
            categories=sorted(c.value for c in decision.categories),
            approved=decision.approved,
            auth_time=auth_time,
            sid=session_hash[:32],
            session=session_hash,
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CodeGrant:
        return cls(**{**payload, "approved": bool(payload.get("approved", False))})


def issue_code(*, portal: Portal, grant: CodeGrant, client_ip: str | None, actor: str) -> str:
    """Store ``grant`` under a new one-time code (``code_ttl_s``), audited; the code."""
    code = new_token()
    portal.store.put_code(
        code_hash=hash_token(code),
        payload=asdict(grant),
        expires_at=portal.clock() + portal.settings.code_ttl_s,
    )
    portal.auditor.record(
        action="oidc.code.issued",
        actor=actor,
        outcome="success",
        enclave=grant.enclave,
        client_ip=client_ip,
        details={"client_id": grant.client_id},
    )
    return code


def authenticate_client(
    *,
    portal: Portal,
    client_id: str,
    client_secret: str,
    authorization: str | None,
    client_ip: str | None,
) -> ClientRecord:
    """Client authentication (``client_secret_basic`` or ``_post``), constant-time on
    the secret's hash; every failure is ``TokenRefusedError(error="invalid_client")``."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise TokenRefusedError(
                "Malformed Basic credentials.", error="invalid_client"
            ) from None
        cid, _, csec = raw.partition(":")
        client_id, client_secret = urllib.parse.unquote(cid), urllib.parse.unquote(csec)
    if client_id and not CLIENT_ID.match(client_id):
        # Malformed (control characters, oversize): refused before it can reach the log.
        portal.auditor.record(
            action="web.request.rejected",
            actor="anonymous",
            outcome="failure",
            client_ip=client_ip,
            details={"path": "/oidc/token", "field": "client_id", "reason": "malformed"},
        )
        raise TokenRefusedError("Client authentication failed.", error="invalid_client")
    client = portal.store.get_client(client_id=client_id) if client_id else None
    if client is None or not tokens_equal(client.secret_hash, hash_token(client_secret)):
        named = bool(_NAMED_CLIENT.fullmatch(client_id))  # one that cannot be is not echoed
        portal.auditor.record(
            action="oidc.client.auth_failed",
            actor=client_id if named else "unknown",
            outcome="failure",
            client_ip=client_ip,
            details={"client_id": client_id if named else "(not a client id)"},
        )
        raise TokenRefusedError("Client authentication failed.", error="invalid_client")
    return client


@dataclass(frozen=True)
class TokenGrant:
    """The tokens a redeemed code buys."""

    access_token: str
    token_type: str
    expires_in: int
    id_token: str
    scope: str


def _refuse_code(
    *,
    portal: Portal,
    client: ClientRecord,
    client_ip: str | None,
    reason: str,
    message: str,
    enclave: str | None = None,
) -> TokenRefusedError:
    count_refusal(
        portal=portal,
        action="oidc.token.refused",
        actor=client.client_id,
        client_ip=client_ip,
        enclave=enclave,
        details={"client_id": client.client_id, "reason": reason},
    )
    return TokenRefusedError(message, error="invalid_grant")


def _checked_grant(
    *,
    portal: Portal,
    client: ClientRecord,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    client_ip: str | None,
) -> tuple[CodeGrant, User, list[str]]:
    """Steps 2 to 4 of ``redeem_code``: the grant, its user and their enclaves."""

    def refuse(*, reason: str, message: str, enclave: str | None = None) -> TokenRefusedError:
        return _refuse_code(
            portal=portal,
            client=client,
            client_ip=client_ip,
            reason=reason,
            message=message,
            enclave=enclave,
        )

    payload = (
        portal.store.peek_code(code_hash=hash_token(code), now=portal.clock()) if code else None
    )
    if payload is None or payload["client_id"] != client.client_id:
        raise refuse(reason="unknown, expired or reused code", message=_BAD_CODE)
    grant = CodeGrant.from_payload(payload)
    if grant.redirect_uri != redirect_uri:
        raise refuse(
            reason="redirect_uri mismatch",
            message="redirect_uri does not match the authorization request.",
        )
    try:
        validate_code_verifier(code_verifier)
    except InvalidInputError as e:
        raise refuse(reason="malformed PKCE verifier", message=e.message) from None
    if not pkce_s256_matches(verifier=code_verifier, challenge=grant.challenge):
        raise refuse(
            reason="PKCE verifier mismatch",
            message="code_verifier does not match code_challenge.",
        )
    sess = portal.store.get_session(id_hash=grant.session)
    user = portal.store.get_user(user_id=grant.user_id)
    if sess is None or sess.ended_at is not None or user.status != "active":
        raise refuse(reason="sign-in session ended", message="The sign-in session has ended.")
    enclaves = [e.name for e in portal.store.list_enclaves(username=user.username)]
    if grant.enclave is not None and grant.enclave not in enclaves:
        raise refuse(
            reason="membership removed",
            message="The user is no longer a member of this enclave.",
            enclave=grant.enclave,
        )
    return grant, user, enclaves


def id_token_claims(
    *, issuer: str, grant: CodeGrant, user: User, enclaves: list[str], now: int, ttl_s: int
) -> dict[str, Any]:
    """The ID token's claims for ``grant`` (also what userinfo answers from)."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user.id,
        "aud": grant.client_id,
        "iat": now,
        "exp": now + ttl_s,
        "auth_time": grant.auth_time,
        "amr": grant.amr,
        "acr": grant.acr,
        "enclave_factors": grant.categories,
        "enclave_approved": grant.approved,
        "enclaves": enclaves,
        "preferred_username": user.username,
        "name": user.display_name,
        "roles": sorted(user.roles),
        "sid": grant.sid,
    }
    if grant.enclave:
        claims["enclave"] = grant.enclave
    if grant.nonce:
        claims["nonce"] = grant.nonce
    return claims


def redeem_code(
    *,
    portal: Portal,
    client: ClientRecord,
    grant_type: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    client_ip: str | None,
) -> TokenGrant:
    """The token request of an authenticated ``client`` (see ``authenticate_client``).

    Refusals are counted against the caller's address, but this step does not itself
    stop at the address limit: its callers are hub servers, and a user who feeds a
    hub bad codes must not lock every user of that hub out.
      1. Only the authorization_code grant.
      2. The code: once, unexpired, for this client and redirect URI.
      3. PKCE S256: the verifier is well formed and matches the code's challenge.
      4. The sign-in session and enclave membership are still valid now.
      5. Consume the code and store the access token atomically: one winner.
    """
    if grant_type != "authorization_code":
        raise TokenRefusedError(
            "Only authorization_code is supported.", error="unsupported_grant_type"
        )
    grant, user, enclaves = _checked_grant(
        portal=portal,
        client=client,
        code=code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        client_ip=client_ip,
    )
    s = portal.settings
    now = int(portal.clock())
    claims = id_token_claims(
        issuer=s.issuer.rstrip("/"),
        grant=grant,
        user=user,
        enclaves=enclaves,
        now=now,
        ttl_s=s.id_token_ttl_s,
    )
    id_token = portal.keys.sign(claims)
    access = new_token()
    if not portal.store.redeem_code(
        code_hash=hash_token(code),
        now=portal.clock(),
        token_hash=hash_token(access),
        token_payload={
            "user_id": user.id,
            "enclave": grant.enclave,
            "claims": claims,
            "session": grant.session,
        },
        token_expires_at=now + s.access_token_ttl_s,
    ):
        portal.auditor.record(
            action="oidc.token.refused",
            actor=client.client_id,
            outcome="failure",
            client_ip=client_ip,
            details={"reason": "code redeemed concurrently"},
        )
        raise TokenRefusedError(_BAD_CODE, error="invalid_grant")
    portal.auditor.record(
        action="oidc.token.issued",
        actor=user.username,
        outcome="success",
        enclave=grant.enclave,
        client_ip=client_ip,
        details={
            "client_id": client.client_id,
            "amr": grant.amr,
            "acr": grant.acr,
            "enclave_factors": grant.categories,
        },
    )
    return TokenGrant(
        access_token=access,
        token_type="Bearer",  # noqa: S106 (the RFC 6750 token type, not a secret)
        expires_in=s.access_token_ttl_s,
        id_token=id_token,
        scope=grant.scope,
    )


@dataclass(frozen=True)
class UserInfo:
    """The userinfo response: the token's sign-in claims, with enclaves and roles as now."""

    sub: str
    preferred_username: str
    name: str
    amr: list[str]
    acr: str
    enclave_factors: list[str]
    enclave_approved: bool
    enclaves: list[str]
    roles: list[str]
    auth_time: int


def session_limits(portal: Portal) -> SessionLimits:
    """The portal session's limits: the login tier's idle and absolute limits."""
    rules = portal.login_tier.session
    return SessionLimits(idle_timeout_s=rules.idle_timeout_s, max_session_s=rules.max_session_s)


def userinfo(*, portal: Portal, authorization: str | None) -> UserInfo:
    """The claims behind a Bearer access token. The token dies with its sign-in
    session (logout, idle or absolute limit, revocation), as at the token endpoint."""
    if not authorization or not authorization.startswith("Bearer "):
        raise BearerRefusedError("A Bearer access token is required.", error="")
    now = portal.clock()
    p = portal.store.get_access_token(token_hash=hash_token(authorization[7:].strip()), now=now)
    if p is None:
        raise BearerRefusedError("The access token is invalid or expired.", error="invalid_token")
    c = p["claims"]
    user = portal.store.get_user(user_id=p["user_id"])
    sid = str(p.get("session", ""))
    sess = portal.store.get_session(id_hash=sid) if sid else None
    live = sess is not None and (
        expiry_reason(session=sess, limits=session_limits(portal), now=now) is None
    )
    if not live or user.status != "active":
        portal.auditor.record(
            action="oidc.token.refused",
            actor=user.username,
            outcome="failure",
            enclave=p["enclave"],
            details={"reason": "userinfo after the sign-in session ended"},
        )
        raise BearerRefusedError(
            "The sign-in session of this access token has ended.", error="invalid_token"
        )
    same = ("sub", "preferred_username", "name", "amr", "acr", "enclave_factors", "auth_time")
    return UserInfo(
        **{k: c[k] for k in same},
        enclave_approved=bool(c.get("enclave_approved", False)),
        enclaves=[e.name for e in portal.store.list_enclaves(username=user.username)],
        roles=sorted(user.roles),
    )


@dataclass(frozen=True)
class RotatedKey:
    """The signing key that signs from now on."""

    kid: str


def rotate_signing_key(*, portal: Portal, actor: str) -> RotatedKey:
    """A new signing key; the previous one stays in the JWKS for its grace period."""
    kid = portal.keys.rotate()
    portal.auditor.record(
        action="admin.signing_key.rotated", actor=actor, outcome="success", details={"kid": kid}
    )
    return RotatedKey(kid=kid)
