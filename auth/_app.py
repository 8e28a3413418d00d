"""What every portal route shares: sessions, CSRF, rendering, headers, error mapping.

Used by the routers of ``auth._web`` (like JupyterHub's ``handlers/base.py``); it
holds no route itself and makes no security decision it could delegate to the
HTTP-free ``auth._session`` and ``auth._provider``.

Pages are server-rendered and work without JavaScript, except the WebAuthn
ceremony (``/static/webauthn.js``). Every form carries a CSRF token bound to the
server-side session; cookies are ``__Host-`` Secure HttpOnly SameSite=Lax; the CSP
forbids inline script and framing.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, Header, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from audit.http_headers import SecurityHeaders

from ._crypto import hash_token, new_token, tokens_equal
from ._errors import (
    AuditUnavailableError,
    AuthError,
    ConflictError,
    FactorFailedError,
    ForbiddenError,
    InvalidInputError,
    KeyRingError,
    NotFoundError,
    StoreError,
    ThrottledError,
    UnauthenticatedError,
)
from ._factors import (
    FactorResult,
    factor_to_json,
    factors_from_json,
)
from ._forms import Post
from ._i18n import LANGS, translate, translate_message
from ._policy import (
    LoginDecision,
    Tier,
    check_source_network,
    evaluate_login,
)
from ._portal import Portal
from ._provider import (
    session_limits,
)
from ._session import (
    ENROL_STAGES,
    FACTOR_STAGES,
    Event,
    Stage,
    advance,
    csrf_matches,
    expiry_reason,
    stage_of,
)
from ._store import EnclaveRecord, SessionRecord, User

__all__ = [
    "FACTOR_ERRORS",
    "LANG_COOKIE",
    "PORTAL_CSP",
    "SECRET_FORM",
    "SESSION_COOKIE",
    "Admin",
    "Ctx",
    "SecurityHeaders",
    "Web",
    "WebDep",
    "actor_of",
    "status_of",
    "web_of",
]

#: The forms that carry a secret being guessed (password, TOTP code, invitation code):
#: a request refused as malformed there counts against the client address.
SECRET_FORM = re.compile(r"/login/password|/login/totp|/invite|/enclaves/[^/]+/totp")

SESSION_COOKIE = "__Host-enclave-session"
LANG_COOKIE = "__Host-enclave-lang"
_HERE = Path(__file__).parent
#: No ``form-action 'self'`` (the audit UI has it): Chromium applies it to the whole
#: redirect chain of a form post, and a sign-in form ends at the hub's redirect URI
#: (tests/e2e/auth/test_jupyterhub.py fails with it).
#: The portal's Content-Security-Policy. No ``form-action``: it would stop the browser
#: following the OIDC redirect to an enclave's hub (docs/portal.md).
PORTAL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _admin_actor(
    request: Request, authorization: Annotated[str | None, Header(max_length=1000)] = None
) -> str:
    """Admin API authentication: a Bearer token whose SHA-256 is configured."""
    portal: Portal = request.app.state.portal
    expected = portal.settings.admin_token_hash
    if expected is None:
        raise ForbiddenError("The admin API is not enabled (no admin token configured).")
    if not authorization or not authorization.startswith("Bearer "):
        raise UnauthenticatedError("A Bearer admin token is required.")
    if not tokens_equal(hash_token(authorization[7:].strip()), expected):
        portal.auditor.record(action="admin.auth.failed", actor="unknown", outcome="failure")
        raise UnauthenticatedError("The admin token is not valid.")
    return "admin-api"


Admin = Annotated[str, Depends(_admin_actor)]


@dataclass
class Ctx:
    """One request's view of the session."""

    request: Request
    session: SessionRecord
    token: str | None  # set when a new cookie must be sent
    lang: str
    client_ip: str | None

    @property
    def state(self) -> dict[str, Any]:
        return self.session.state

    @property
    def stage(self) -> Stage | None:
        return stage_of(self.state)


def actor_of(rec: SessionRecord) -> str:
    """The audit actor of a session: its username, user id, or ``anonymous``."""
    return str(rec.state.get("username") or rec.user_id or "anonymous")


class Web:
    """What every page shares (like JupyterHub's ``BaseHandler``): the session of a
    request, CSRF, rendering, cookies, and the login decisions made on a session.

    One per app, at ``app.state.web``; handlers take it with ``web: WebDep``."""

    def __init__(self, *, portal: Portal) -> None:
        self.portal = portal
        self.store = portal.store
        self.audit = portal.auditor.record
        self.issuer = portal.settings.issuer.rstrip("/")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
        )
        self._purged = 0.0  # when session_ctx last purged dead sessions

    def wants_json(self, request: Request) -> bool:
        p = request.url.path
        return p.startswith(
            ("/api/", "/oidc/token", "/oidc/userinfo", "/.well-known", "/oidc/jwks")
        ) or (p.endswith("/options"))

    def client_ip(self, request: Request) -> str | None:
        return self.portal.client_ip(
            peer=request.client.host if request.client else None,
            forwarded_for=request.headers.getlist("x-forwarded-for"),
        )

    def lang_of(self, request: Request) -> str:
        c = request.cookies.get(LANG_COOKIE)
        if c in LANGS:
            return str(c)
        al = request.headers.get("accept-language", "")
        return "ja" if al.lower().startswith("ja") else "en"

    def render(
        self, ctx_or_req: Ctx | Request, template: str, *, status: int = 200, **kw: Any
    ) -> HTMLResponse:
        if isinstance(ctx_or_req, Ctx):
            lang, csrf = ctx_or_req.lang, ctx_or_req.session.csrf
        else:
            lang, csrf = self.lang_of(ctx_or_req), None
        if kw.get("error"):
            kw["error"] = translate_message(str(kw["error"]), lang)
        html = self.env.get_template(template).render(
            lang=lang, t=lambda k: translate(k, lang), csrf=csrf, **kw
        )
        resp = HTMLResponse(html, status_code=status)
        if isinstance(ctx_or_req, Ctx):
            if ctx_or_req.token:
                self.set_cookie(resp, ctx_or_req.token)
            retry = getattr(ctx_or_req.request.state, "retry_after", None)
            if retry is not None:
                resp.headers["Retry-After"] = str(retry)
        return resp

    def note_retry(self, ctx: Ctx, e: AuthError) -> None:
        if isinstance(e, ThrottledError):
            ctx.request.state.retry_after = e.retry_after_s

    def set_cookie(self, resp: Response, token: str) -> None:
        resp.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="lax", path="/")

    def redirect(self, ctx: Ctx | None, url: str) -> RedirectResponse:
        resp = RedirectResponse(url, status_code=303)
        if ctx is not None and ctx.token:
            self.set_cookie(resp, ctx.token)
        return resp

    def session_ctx(self, request: Request, *, create: bool = True) -> Ctx:
        now = self.portal.clock()
        ip = self.client_ip(request)
        tok = request.cookies.get(SESSION_COOKIE)
        rec = self.store.get_session(id_hash=hash_token(tok)) if tok and len(tok) < 100 else None
        if rec is not None and rec.ended_at is None:
            expired = expiry_reason(session=rec, limits=session_limits(self.portal), now=now)
            if expired is None:
                self.store.touch_session(id_hash=rec.id_hash, now=now)
                return Ctx(request, rec, None, self.lang_of(request), ip)
            self.store.end_session(id_hash=rec.id_hash, now=now)
            if rec.user_id:
                self.audit(
                    action="session.ended",
                    actor=actor_of(rec),
                    outcome="success",
                    client_ip=ip,
                    details={"session": rec.id_hash[:16], "reason": expired},
                )
        if not create:
            raise UnauthenticatedError("You are not signed in.")
        if now - self._purged >= 60:
            # Each cookieless request makes a row: drop dead ones (anonymous and idle past
            # the limit, or ended longer than a session can last) at most once a minute.
            self._purged = now
            rules = self.portal.login_tier.session
            self.store.purge_sessions(
                anonymous_idle_before=now - rules.idle_timeout_s,
                ended_before=now - rules.max_session_s,
            )
        token = new_token()
        self.store.create_session(
            id_hash=hash_token(token), csrf=new_token(), client_ip=ip, now=now
        )
        rec2 = self.store.get_session(id_hash=hash_token(token))
        assert rec2 is not None
        return Ctx(request, rec2, token, self.lang_of(request), ip)

    def save(self, ctx: Ctx, *, user_id: str | None = None, auth_time: float | None = None) -> None:
        self.store.save_session(
            id_hash=ctx.session.id_hash,
            user_id=user_id if user_id is not None else ctx.session.user_id,
            state=ctx.state,
            last_seen=self.portal.clock(),
            auth_time=auth_time if auth_time is not None else ctx.session.auth_time,
        )

    def renew(self, ctx: Ctx) -> None:
        token = new_token()
        new_hash = hash_token(token)
        self.store.rename_session(old_hash=ctx.session.id_hash, new_hash=new_hash, csrf=new_token())
        renamed = self.store.get_session(id_hash=new_hash)
        if renamed is None:
            raise UnauthenticatedError("The session ended while signing in; sign in again.")
        ctx.session = SessionRecord(**{**renamed.__dict__, "state": ctx.state})
        ctx.token = token

    def posted(self, post: Post) -> Ctx:
        """The session of a form post whose CSRF token matches (refused otherwise)."""
        ctx = self.session_ctx(post.request)
        self.check_csrf(ctx, post.csrf)
        return ctx

    def form(
        self,
        ctx: Ctx,
        *,
        heading: str,
        action: str,
        fields: Sequence[tuple[str, str, str, str]],
        error: str | None = None,
        status: int = 200,
        **extra: Any,
    ) -> HTMLResponse:
        """A ``form.html`` page; each field is (name, label key, input type, autocomplete)."""
        return self.render(
            ctx,
            "form.html",
            status=status,
            heading=heading,
            action=action,
            submit=translate("next", ctx.lang),
            error=error,
            fields=[
                {"name": n, "label": translate(k, ctx.lang), "type": t, "autocomplete": a}
                for n, k, t, a in fields
            ],
            **extra,
        )

    def authentication_options(self, ctx: Ctx, user: User, *, tier: Tier) -> Response:
        """The WebAuthn assertion options for ``user``, with ``tier``'s UV rule."""
        body = self.portal.factors.begin_webauthn_authentication(
            user=user,
            session_hash=ctx.session.id_hash,
            user_verification=tier.login.webauthn_user_verification,
        )
        return Response(body, media_type="application/json")

    def signed_out(self, request: Request) -> HTMLResponse:
        """The page after a sign-out, with a link to sign in again."""
        lang = self.lang_of(request)
        return self.render(
            request,
            "message.html",
            heading=translate("signed_out", lang),
            link="/login",
            link_text=translate("sign_in", lang),
        )

    def check_csrf(self, ctx: Ctx, token: str | None) -> None:
        if not csrf_matches(presented=token, expected=ctx.session.csrf):
            self.audit(
                action="web.csrf.rejected",
                actor=actor_of(ctx.session),
                outcome="failure",
                client_ip=ctx.client_ip,
                details={"path": ctx.request.url.path},
            )
            raise ForbiddenError(
                "The form expired or did not come from this site; reload the page."
            )

    def current_user(self, ctx: Ctx) -> User | None:
        return self.store.get_user(user_id=ctx.session.user_id) if ctx.session.user_id else None

    def require_auth(self, ctx: Ctx) -> User:
        user = self.current_user(ctx)
        if user is None or ctx.stage is not Stage.AUTHENTICATED or user.status != "active":
            raise UnauthenticatedError("You are not signed in.")
        return user

    def add_factor(self, ctx: Ctx, result: FactorResult) -> None:
        ctx.state.setdefault("factors", []).append(factor_to_json(result, at=self.portal.clock()))

    def decide(self, ctx: Ctx, tier: Tier) -> LoginDecision:
        return evaluate_login(tier=tier, factors=factors_from_json(ctx.state.get("factors", [])))

    def pending_tier(self, ctx: Ctx) -> Tier:
        """The tier this sign-in must reach: the login tier, or the stricter tier of a
        client (the audit UI) whose authorization request waits for a step-up."""
        pending = ctx.state.get("authorize")
        name = pending.get("_tier") if isinstance(pending, dict) else None
        return self.portal.tier(str(name)) if name else self.portal.login_tier

    def factor_page(
        self,
        ctx: Ctx,
        user: User,
        *,
        base: str,
        heading: str,
        intro: str | None = None,
        reasons: tuple[str, ...] = (),
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        kinds = {c.kind for c in self.store.list_credentials(user_id=user.id) if not c.disabled}
        return self.render(
            ctx,
            "factor.html",
            status=status,
            heading=heading,
            intro=intro,
            reasons=reasons,
            error=error,
            base=base,
            webauthn="webauthn" in kinds,
            has_totp="totp" in kinds,
            has_webauthn="webauthn" in kinds,
        )

    def ceremony_tier(self, ctx: Ctx) -> Tier:
        """The tier a factor at ``/login/...`` is checked against: the login tier at
        sign-in, the waiting client's tier on a step-up."""
        return (
            self.pending_tier(ctx) if ctx.stage is Stage.AUTHENTICATED else self.portal.login_tier
        )

    def login_user(self, ctx: Ctx) -> User:
        user = self.current_user(ctx)
        if user is None or ctx.stage not in FACTOR_STAGES:
            raise UnauthenticatedError("Start by entering your username and password.")
        return user

    def continue_signed_in(self, ctx: Ctx) -> Response:
        pending = ctx.state.get("authorize")
        if isinstance(pending, dict):
            query = {k: v for k, v in pending.items() if not k.startswith("_")}
            return self.redirect(ctx, "/oidc/authorize?" + urllib.parse.urlencode(query))
        return self.redirect(ctx, "/")

    def finish_login(self, ctx: Ctx, user: User) -> Response:
        decision = self.decide(ctx, self.portal.login_tier)
        if not decision.allowed:
            self.save(ctx)
            return self.factor_page(
                ctx,
                user,
                base="/login",
                heading=translate("second_factor", ctx.lang),
                reasons=decision.reasons,
                status=401,
            )
        now = self.portal.clock()
        self.renew(ctx)  # a new session id and CSRF token once authenticated (no fixation)
        ctx.state["stage"] = advance(stage=ctx.stage, event=Event.LOGIN_ALLOWED)
        self.save(ctx, auth_time=now)
        self.audit(
            action="session.started",
            actor=user.username,
            outcome="success",
            client_ip=ctx.client_ip,
            details={
                "session": ctx.session.id_hash[:16],
                "amr": list(decision.amr),
                "categories": sorted(c.value for c in decision.categories),
            },
        )
        return self.continue_signed_in(ctx)

    def options_ctx(self, post: Post) -> Ctx:
        """The existing session of a script's post whose CSRF token matches."""
        ctx = self.session_ctx(post.request, create=False)
        self.check_csrf(ctx, post.csrf)
        return ctx

    def end_session(self, ctx: Ctx, *, everywhere: bool, reason: str) -> None:
        user = self.current_user(ctx)
        if user is not None and everywhere:
            self.portal.revoke_sessions(user_id=user.id, actor=user.username, reason=reason)
            self.store.revoke_user_tokens(user_id=user.id)
        if (
            self.store.end_session(id_hash=ctx.session.id_hash, now=self.portal.clock())
            and user is not None
        ):
            self.audit(
                action="session.ended",
                actor=user.username,
                outcome="success",
                client_ip=ctx.client_ip,
                details={"session": ctx.session.id_hash[:16], "reason": reason},
            )

    def enrol_user(self, ctx: Ctx) -> User:
        user = self.current_user(ctx)
        if user is None or ctx.stage not in ENROL_STAGES:
            raise UnauthenticatedError("Sign in (or accept an invitation) to enrol factors.")
        return user

    def entry_check(
        self, ctx: Ctx, user: User, enc: EnclaveRecord
    ) -> tuple[Tier, LoginDecision, list[str]]:
        tier = self.portal.tier(enc.tier)
        decision = self.decide(ctx, tier)
        blockers: list[str] = []
        net = check_source_network(
            tier=tier, allowlist=list(enc.networks), client_ip=ctx.client_ip or ""
        )
        if not net.allowed:
            blockers.append(f"Entry from your network is not allowed: {net.reason}.")
        auth_time = ctx.session.auth_time or 0.0
        if self.portal.clock() - auth_time > tier.session.max_session_s:
            blockers.append("Your sign-in is too old for this enclave; sign in again.")
        return tier, decision, blockers


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


WebDep = Annotated[Web, Depends(web_of)]


#: What a factor check may raise that is answered on its page rather than as an error.
FACTOR_ERRORS = (FactorFailedError, ThrottledError, InvalidInputError)

#: The one place an error type becomes an HTTP status (the first match wins); any
#: other ``AuthError`` is bad input (400).
_STATUS: tuple[tuple[type[AuthError], int], ...] = (
    (FactorFailedError, 401),
    (UnauthenticatedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ThrottledError, 429),
    (AuditUnavailableError, 503),
    (StoreError, 503),
    (KeyRingError, 503),
)


def status_of(exc: AuthError) -> int:
    """The HTTP status of ``exc``: its page, or the JSON error of an API."""
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 400)
