"""Loaded inside an enclave's JupyterHub: the authenticator and the audited spawner.

``EnclaveAuthenticator`` is oauthenticator's ``GenericOAuthenticator`` narrowed to
one identity provider, the portal, and one enclave. Security procedure for a
sign-in (``authenticate``), every step before oauthenticator's admin and
allow-all shortcuts (``check_allowed``) can run:

1. The portal redirected back with an error (it refused the member itself): record
   ``hub.login.refused`` (stage ``portal``) and show a clear page.
2. Redeem the code at the portal's token endpoint with the PKCE verifier
   (oauthenticator's ``enable_pkce``; the state cookie is checked by its handler).
3. Verify the ID token: RS256 signature by a key in the portal's JWKS (refetched
   once for an unknown ``kid``), ``iss`` is the portal, ``aud`` is this hub's client,
   not expired. Anything else refuses (stage ``token``).
4. Membership: the token's ``enclaves`` names this enclave AND the username is a
   member in the Enclave spec (stage ``membership``).
5. Factors: ``policies.evaluate_claims`` on ``enclave_factors``/``amr``/``acr``
   against the tier, with the site's tier overlay when it has one (stage ``factors``).
6. Record ``hub.login.allowed`` durably; if the record cannot be made durable,
   refuse (stage ``audit``): no entry without its record.

A refusal raises a 403 whose page says what was wrong, and is recorded durably.
``check_allowed`` admits only what passed these steps; nobody is ever an admin.
``refresh_user`` repeats steps 3-5 on the stored token, so a member removed at the
portal, or an expired token, sends the browser back through the portal.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from jupyterhub.spawner import LocalProcessSpawner
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler
from tornado import web
from traitlets import List, Unicode

from audit import Event
from audit.client import AuditClient, ClientError
from policies import LoginDecision, evaluate_claims, load_catalog

from ._audit import open_audit_client
from .errors import SpecError

__all__ = [
    "AuditedLocalProcessSpawner",
    "AuditedSpawnerMixin",
    "EnclaveAuthenticator",
    "EntryDecision",
    "TokenRefused",
    "client_address",
    "decide_entry",
    "verify_id_token",
]

_LEEWAY_S = 30


class TokenRefused(Exception):
    """Step 3 failed: ``reason`` is one sentence, safe to show and to record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def verify_id_token(
    token: object, *, jwks: Mapping[str, Any], issuer: str, client_id: str, now: float
) -> dict[str, Any]:
    """Step 3: the claims of ``token`` once its signature, issuer, audience and expiry hold.

    Raises :class:`TokenRefused`; the reason starting with "unknown signing key" means
    the caller may refetch the JWKS once."""
    if not isinstance(token, str) or len(token) > 16384:
        raise TokenRefused("the portal returned no usable ID token")
    try:
        kid = jws.extract_compact(token.encode("ascii")).headers().get("kid")
    except (JoseError, ValueError, UnicodeError):
        raise TokenRefused("the ID token is not a compact JWS") from None
    listed = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not listed:
        raise TokenRefused("unknown signing key: the ID token's kid is not in the portal's JWKS")
    try:
        keys = KeySet.import_key_set({"keys": listed})
        claims: dict[str, Any] = jwt.decode(token, keys, algorithms=["RS256"]).claims
    except JoseError:
        raise TokenRefused(
            "the ID token's signature does not verify (RS256, portal JWKS)"
        ) from None
    except (ValueError, TypeError, KeyError):
        raise TokenRefused("the ID token is not a signed JWT with object claims") from None
    registry = jwt.JWTClaimsRegistry(
        now=int(now),
        leeway=_LEEWAY_S,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
    )
    try:
        registry.validate(claims)
    except JoseError as e:
        raise TokenRefused(f"the ID token is not valid for this hub: {e.description}") from None
    return claims


@dataclass(frozen=True, kw_only=True)
class EntryDecision:
    """Steps 4 and 5 for one verified token."""

    allowed: bool
    stage: str
    username: str
    reasons: tuple[str, ...]
    login: LoginDecision | None


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def decide_entry(
    *,
    claims: Mapping[str, Any],
    enclave: str,
    members: Sequence[str],
    tier: str,
    tier_overlay: str | None = None,
) -> EntryDecision:
    """Steps 4 and 5: may the holder of these verified claims enter ``enclave``?

    ``tier`` is judged as the catalog with ``tier_overlay`` (the site's tightening
    file) applied; a file that cannot be loaded raises ``CatalogError``."""
    username = claims.get("preferred_username")
    if not isinstance(username, str) or not username:
        return EntryDecision(
            allowed=False,
            stage="token",
            username="unknown",
            reasons=("the ID token names no user (preferred_username)",),
            login=None,
        )
    if enclave not in _strings(claims.get("enclaves")) or username not in members:
        return EntryDecision(
            allowed=False,
            stage="membership",
            username=username,
            reasons=(f"{username} is not a member of the enclave {enclave}",),
            login=None,
        )
    acr = claims.get("acr")
    login = evaluate_claims(
        tier=load_catalog(overlay=tier_overlay or None).get(tier),
        enclave_factors=_strings(claims.get("enclave_factors")),
        amr=_strings(claims.get("amr")),
        acr=acr if isinstance(acr, str) else "",
        approved=claims.get("enclave_approved") is True,
    )
    if not login.allowed:
        return EntryDecision(
            allowed=False, stage="factors", username=username, reasons=login.reasons, login=login
        )
    return EntryDecision(allowed=True, stage="", username=username, reasons=(), login=login)


class Refused(web.HTTPError):
    """A refused entry: 403 with a page that says why (JupyterHub shows ``jupyterhub_message``)."""

    def __init__(self, *, enclave: str, reasons: Sequence[str], status: int = 403) -> None:
        super().__init__(status, "entry refused")
        self.jupyterhub_message = (
            f"You cannot enter the enclave {enclave}: "
            + "; ".join(reasons)
            + ". Sign in again at the portal with the factors this enclave needs, or ask its "
            "data custodian for access."
        )


class EnclaveCallbackHandler(OAuthCallbackHandler):  # type: ignore[misc]
    """Step 1: an error the portal sent back is recorded and shown, never a bare 400."""

    def check_error(self) -> None:
        error = self.get_argument("error", "")
        if not error:
            return
        self.check_state()  # only the browser that started this sign-in may report it
        desc = self.get_argument("error_description", error)[:256]
        authenticator = self.authenticator
        assert isinstance(authenticator, EnclaveAuthenticator)
        authenticator.refuse(
            actor="unknown", stage="portal", reasons=[f"the portal refused: {desc}"], handler=self
        )

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # tornado's default line carries the query string (the authorization code)
        if isinstance(value, Refused):
            self.log.warning(
                "%d %s %s: entry refused", value.status_code, self.request.method, self.request.path
            )
            return
        super().log_exception(typ, value, tb)


def client_address(request: Any) -> str | None:
    """The address of the client whose request reached the hub through its proxy.

    The last ``X-Forwarded-For`` entry: the proxy in front of the hub (ours in-process,
    configurable-http-proxy in a pod) appends its peer there. Not tornado's
    ``remote_ip``, which believes ``X-Real-IP`` first: configurable-http-proxy passes
    that header through from the client, so the client could name any address."""
    forwarded = request.headers.get_list("X-Forwarded-For")
    hops = [h.strip() for value in forwarded for h in value.split(",") if h.strip()]
    if hops:
        return str(hops[-1])
    peer = request.connection.context.address if request.connection else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else request.remote_ip


class EnclaveAuthenticator(GenericOAuthenticator):  # type: ignore[misc]
    """See the module docstring."""

    callback_handler = EnclaveCallbackHandler
    login_service = "the Enclave portal"

    issuer = Unicode(config=True, help="The portal's issuer URL: the only one trusted.")
    jwks_url = Unicode(config=True, help="The portal's JWKS URL.")
    enclave = Unicode(config=True, help="The one enclave this hub serves.")
    members = List(Unicode(), config=True, help="Members of the enclave (the Enclave spec).")
    tier = Unicode(config=True, help="The enclave's tier id in the policies catalog.")
    tier_overlay = Unicode(
        config=True, help="The site's tier overlay file (it only tightens tiers); empty: none."
    )
    audit_url = Unicode(config=True, help="The audit service's base URL.")
    audit_token_file = Unicode(config=True, help="The hub's intake token (source=hub), 0600.")
    audit_spool = Unicode(config=True, help="The audit client's durable spool file.")

    _jwks: dict[str, Any] | None = None

    def check_allow_config(self) -> None:
        """At hub start (JupyterHub calls this once): refuse to run without an enclave,
        its members, a known tier, the portal's endpoints and a usable audit intake.

        Raises ``SpecError`` (or ``UnknownTierError``, or ``CatalogError`` for a tier
        overlay that cannot be loaded), which stops the hub: a hub that
        could not record its entries must not admit anyone."""
        for name in ("issuer", "jwks_url", "enclave", "tier", "audit_url", "audit_token_file"):
            if not getattr(self, name):
                raise SpecError(f"EnclaveAuthenticator.{name} is not set", field=name)
        if not self.members:
            raise SpecError(
                "EnclaveAuthenticator.members is empty: nobody could enter", field="members"
            )
        load_catalog(overlay=self.tier_overlay or None).get(self.tier)
        self.audit_client()

    # -- audit ------------------------------------------------------------------------------
    def audit_client(self) -> AuditClient:
        return open_audit_client(
            url=self.audit_url,
            token_file=Path(self.audit_token_file),
            spool=Path(self.audit_spool),
            source="hub",
        )

    def record(
        self,
        *,
        action: str,
        actor: str,
        outcome: str,
        details: Mapping[str, Any],
        client_ip: str | None = None,
    ) -> None:
        """Make one hub event durable (raises ``ClientError`` when it cannot be)."""
        self.audit_client().record(
            Event.new(
                source="hub",
                actor=actor,
                action=action,
                outcome=outcome,
                enclave=self.enclave,
                client_ip=client_ip,
                details=details,
            )
        )

    def refuse(
        self, *, actor: str, stage: str, reasons: Sequence[str], handler: web.RequestHandler
    ) -> None:
        """Record the refusal, then raise the 403 page (a 503 when it cannot be recorded)."""
        reasons = [r[:500] for r in reasons] or ["no reason given"]
        try:
            self.record(
                action="hub.login.refused",
                actor=actor,
                outcome="denied",
                details={"stage": stage, "reasons": reasons, "tier": self.tier},
                client_ip=client_address(handler.request),
            )
        except ClientError as e:
            self.log.error("the refusal of %s could not be recorded: %s", actor, e)
            raise Refused(
                enclave=self.enclave,
                reasons=[*reasons, "and the refusal could not be recorded"],
                status=503,
            ) from None
        raise Refused(enclave=self.enclave, reasons=reasons)

    # -- steps 3-5 ---------------------------------------------------------------------------
    async def _fetch_jwks(self) -> dict[str, Any]:
        jwks = await self.httpfetch(self.jwks_url, "fetching the portal's JWKS", method="GET")
        if not isinstance(jwks, dict):
            raise TokenRefused("the portal's JWKS is not a key set")
        self._jwks = jwks
        return jwks

    async def verified_claims(self, token_info: Mapping[str, Any]) -> dict[str, Any]:
        token = token_info.get("id_token")
        jwks = self._jwks or await self._fetch_jwks()
        kwargs = {"issuer": self.issuer, "client_id": self.client_id}
        try:
            return verify_id_token(token, jwks=jwks, now=time.time(), **kwargs)
        except TokenRefused as e:
            if not e.reason.startswith("unknown signing key"):
                raise
        return verify_id_token(token, jwks=await self._fetch_jwks(), now=time.time(), **kwargs)

    def decide(self, claims: Mapping[str, Any]) -> EntryDecision:
        """Steps 4 and 5 for this hub's enclave, members, tier and tier overlay."""
        return decide_entry(
            claims=claims,
            enclave=self.enclave,
            members=self.members,
            tier=self.tier,
            tier_overlay=self.tier_overlay or None,
        )

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        # the user is who the verified ID token says, never an unverified userinfo answer
        return await self.verified_claims(token_info)

    async def authenticate(
        self, handler: web.RequestHandler, data: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        params = self.build_access_tokens_request_params(handler, data)
        try:
            token_info = await self.get_token_info(handler, params)
            claims = await self.verified_claims(token_info)
        except (TokenRefused, web.HTTPError) as e:
            reason = e.reason if isinstance(e, TokenRefused) else "the portal issued no token"
            self.refuse(actor="unknown", stage="token", reasons=[reason], handler=handler)
        decision = self.decide(claims)
        if not decision.allowed:
            self.refuse(
                actor=decision.username,
                stage=decision.stage,
                reasons=decision.reasons,
                handler=handler,
            )
        assert decision.login is not None
        try:
            self.record(
                action="hub.login.allowed",
                actor=decision.username,
                outcome="success",
                details={
                    "tier": self.tier,
                    "acr": decision.login.acr,
                    "amr": list(decision.login.amr),
                    "categories": sorted(c.value for c in decision.login.categories),
                },
                client_ip=client_address(handler.request),
            )
        except ClientError as e:
            self.log.error("the entry of %s could not be recorded: %s", decision.username, e)
            self.refuse(
                actor=decision.username,
                stage="audit",
                reasons=["the entry could not be recorded in the audit log"],
                handler=handler,
            )
        model: dict[str, Any] = await self._token_to_auth_model(token_info)
        return model

    async def update_auth_model(self, auth_model: dict[str, Any]) -> dict[str, Any]:
        auth_model["admin"] = False  # nobody administers an enclave's hub from inside it
        return auth_model

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        # Only what passed steps 3-5 in authenticate(); no allow-all, admin or scope shortcut.
        return auth_model is not None and username in self.members

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        auth_state = await user.get_auth_state()
        token_info = (auth_state or {}).get("token_response")
        if not isinstance(token_info, dict):
            return False
        try:
            claims = await self.verified_claims(token_info)
        except TokenRefused:
            return False
        decision = self.decide(claims)
        return decision.allowed and decision.username == user.name


class AuditedSpawnerMixin:
    """Records server start, stop and spawn failure (``source=hub``) around any spawner.

    The local backend's sandboxed spawner will use it too, so the records stay the same."""

    def _record(self, action: str, outcome: str, **details: Any) -> None:
        authenticator = self.authenticator  # type: ignore[attr-defined]
        if not isinstance(authenticator, EnclaveAuthenticator):
            raise TypeError("an audited spawner needs the EnclaveAuthenticator")
        authenticator.record(
            action=action,
            actor=self.user.name,  # type: ignore[attr-defined]
            outcome=outcome,
            details={"spawner": type(self).__name__, **details},
        )

    async def start(self) -> Any:
        try:
            result = await super().start()  # type: ignore[misc]
        except Exception as e:
            self._record("hub.spawn.failed", "failure", reason=f"{type(e).__name__}: {e}"[:500])
            raise
        self._record("hub.server.started", "success")
        return result

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)  # type: ignore[misc]
        finally:
            self._record("hub.server.stopped", "success")


class AuditedLocalProcessSpawner(AuditedSpawnerMixin, LocalProcessSpawner):  # type: ignore[misc]
    """LocalProcessSpawner (servers run as the member's OS account) with the records."""
