"""The portal's web application: pages, the OIDC provider endpoints, the admin API.

Pages are server-rendered and work without JavaScript, except the WebAuthn
ceremony (``/static/webauthn.js``). Every form carries a CSRF token bound to the
server-side session; cookies are ``__Host-`` Secure HttpOnly SameSite=Lax; the CSP
forbids inline script and framing.
"""

from __future__ import annotations

import hmac
import re
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import jinja2
from fastapi import Depends, FastAPI, Form, Header, Query, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._crypto import hash_token, new_token, tokens_equal
from ._errors import (
    AuditUnavailableError,
    AuthError,
    FactorFailedError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    ThrottledError,
    UnauthenticatedError,
)
from ._factors import (
    MALFORMED_USERNAME_ACTOR,
    FactorResult,
    factor_to_json,
    factors_from_json,
)
from ._i18n import LANGS, translate, translate_message
from ._names import canonical_username
from ._policy import (
    LoginDecision,
    Tier,
    acr_for_aal,
    check_source_network,
    evaluate_login,
)
from ._portal import Portal
from ._provider import (
    AuthorizationRefusedError,
    AuthorizationRequest,
    BearerRefusedError,
    CodeGrant,
    StepUp,
    TokenRefusedError,
    authenticate_client,
    check_authorization_request,
    client_step_up,
    issue_code,
    redeem_code,
    rotate_signing_key,
    session_limits,
)
from ._provider import userinfo as provider_userinfo
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

__all__ = ["create_app"]

#: The forms that carry a secret being guessed (password, TOTP code, invitation code):
#: a request refused as malformed there counts against the client address.
_SECRET_FORM = re.compile(r"/login/password|/login/totp|/invite|/enclaves/[^/]+/totp")

SESSION_COOKIE = "__Host-enclave-session"
LANG_COOKIE = "__Host-enclave-lang"
_HERE = Path(__file__).parent
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_ERR = {
    400: {"description": "Bad input, one sentence saying what was wrong"},
    401: {"description": "Not authenticated, or a factor failed"},
    403: {"description": "Not allowed (CSRF, membership, tier, network)"},
    404: {"description": "No such thing"},
    409: {"description": "Conflicts with the current state"},
    429: {"description": "Throttled; see Retry-After"},
    503: {"description": "Audit log or store unavailable; see Retry-After"},
}


_TOKEN_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "grant_type": {"type": "string", "maxLength": 64},
        "code": {"type": "string", "maxLength": 200},
        "redirect_uri": {"type": "string", "maxLength": 2000},
        "code_verifier": {"type": "string", "maxLength": 200},
        "client_id": {"type": "string", "maxLength": 128},
        "client_secret": {"type": "string", "maxLength": 200},
    },
}


class _ErrorBody(BaseModel):
    detail: str


class InviteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128)
    display_name: str = Field(default="", max_length=200)
    roles: list[str] = Field(default_factory=lambda: ["researcher"], max_length=4)
    locale: str = Field(default="en", max_length=2)


class InviteResponse(BaseModel):
    username: str
    invitation_code: str
    expires_at: int


class UserOut(BaseModel):
    username: str
    display_name: str
    roles: list[str]
    status: str
    credentials: list[dict[str, Any]]


class ClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")
    redirect_uris: list[str] = Field(min_length=1, max_length=10)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    rotate_secret: bool = False
    #: The tier a client that is not an enclave's hub demands (the audit UI: its
    #: minimum tier); an enclave's hub always demands its enclave's tier.
    tier: str | None = Field(default=None, max_length=64)


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=128)
    role: str = Field(default="researcher", max_length=20)


class EnclaveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: str = Field(max_length=64)
    display_name: str = Field(default="", max_length=200)
    members: list[Member] = Field(default_factory=list, max_length=1000)
    networks: list[str] = Field(default_factory=list, max_length=100)
    hub_url: str = Field(default="", max_length=2000)
    client: ClientIn | None = None


class EnclaveOut(BaseModel):
    name: str
    tier: str
    display_name: str
    networks: list[str]
    members: list[dict[str, str]]
    hub_url: str
    client_id: str | None = None
    client_secret: str | None = None


class ClientOut(BaseModel):
    client_id: str
    client_secret: str


class SessionOut(BaseModel):
    session: str
    user_id: str | None
    client_ip: str | None
    created_at: float
    last_seen: float


class Discovery(BaseModel):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str
    end_session_endpoint: str
    response_types_supported: list[str]
    grant_types_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    code_challenge_methods_supported: list[str]
    scopes_supported: list[str]
    claims_supported: list[str]
    acr_values_supported: list[str]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    id_token: str
    scope: str


class OAuthError(BaseModel):
    error: str
    error_description: str


class _SecurityHeaders:
    """Pure ASGI middleware: security headers on every response (CSP, framing, HSTS)."""

    _BASE: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-security-policy", _CSP.encode()),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
    ]
    _HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")

    def __init__(self, app: ASGIApp, *, hsts: bool, always: bool) -> None:
        self.app = app
        self.hsts = hsts
        self.always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self._BASE)
        if self.hsts and (self.always or scope.get("scheme") == "https"):
            extra.append(self._HSTS)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in extra}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
class _Ctx:
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


def create_app(*, portal: Portal) -> FastAPI:
    """The ASGI app for one portal (tests build one per store; ``serve`` one per process)."""
    app = FastAPI(
        title="Enclave portal",
        version="1.0",
        description="Two-category MFA login, enrolment, OIDC provider and admin API.",
        responses=_ERR,  # type: ignore[arg-type]
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    app.state.portal = portal
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    s = portal.settings
    issuer = s.issuer.rstrip("/")
    store = portal.store
    audit = portal.auditor.record

    # ----- plumbing ---------------------------------------------------------------------
    # HSTS on https requests, and on every response when the public URL is https
    # (TLS terminated by a proxy in front; browsers ignore HSTS received over http).
    app.add_middleware(_SecurityHeaders, hsts=s.hsts, always=s.issuer.startswith("https://"))

    def wants_json(request: Request) -> bool:
        p = request.url.path
        return p.startswith(
            ("/api/", "/oidc/token", "/oidc/userinfo", "/.well-known", "/oidc/jwks")
        ) or (p.endswith("/options"))

    def client_ip(request: Request) -> str | None:
        return portal.client_ip(
            peer=request.client.host if request.client else None,
            forwarded_for=request.headers.getlist("x-forwarded-for"),
        )

    def lang_of(request: Request) -> str:
        c = request.cookies.get(LANG_COOKIE)
        if c in LANGS:
            return str(c)
        al = request.headers.get("accept-language", "")
        return "ja" if al.lower().startswith("ja") else "en"

    def render(
        ctx_or_req: _Ctx | Request, template: str, *, status: int = 200, **kw: Any
    ) -> HTMLResponse:
        if isinstance(ctx_or_req, _Ctx):
            lang, csrf = ctx_or_req.lang, ctx_or_req.session.csrf
        else:
            lang, csrf = lang_of(ctx_or_req), None
        if kw.get("error"):
            kw["error"] = translate_message(str(kw["error"]), lang)
        html = env.get_template(template).render(
            lang=lang, t=lambda k: translate(k, lang), csrf=csrf, **kw
        )
        resp = HTMLResponse(html, status_code=status)
        if isinstance(ctx_or_req, _Ctx):
            if ctx_or_req.token:
                set_cookie(resp, ctx_or_req.token)
            retry = getattr(ctx_or_req.request.state, "retry_after", None)
            if retry is not None:
                resp.headers["Retry-After"] = str(retry)
        return resp

    def note_retry(ctx: _Ctx, e: AuthError) -> None:
        if isinstance(e, ThrottledError):
            ctx.request.state.retry_after = e.retry_after_s

    def set_cookie(resp: Response, token: str) -> None:
        resp.set_cookie(SESSION_COOKIE, token, secure=True, httponly=True, samesite="lax", path="/")

    def redirect(ctx: _Ctx | None, url: str) -> RedirectResponse:
        resp = RedirectResponse(url, status_code=303)
        if ctx is not None and ctx.token:
            set_cookie(resp, ctx.token)
        return resp

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        # Malformed or oversized fields: FastAPI's documented 422 body, and an audit event.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        if request.method == "POST" and _SECRET_FORM.fullmatch(request.url.path):
            # An over-long password, code or invitation is a guess like any other.
            portal.factors.count_address_failure(client_ip=client_ip(request))
        audit(
            action="web.request.rejected",
            actor="anonymous",
            outcome="failure",
            client_ip=client_ip(request),
            details={
                "path": request.url.path[:200],
                "field": where[:100],
                "reason": str(first.get("msg", ""))[:200],
            },
        )
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(AuthError)
    async def on_auth_error(request: Request, exc: AuthError) -> Response:
        headers = {}
        if isinstance(exc, ThrottledError):
            headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, AuditUnavailableError):
            headers["Retry-After"] = str(exc.retry_after_s)
        status = exc.status_code if exc.status_code < 500 or exc.status_code == 503 else 503
        if wants_json(request):
            return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)
        resp = render(
            request,
            "message.html",
            status=status,
            heading=translate("error", lang_of(request)),
            error=exc.message,
            link="/",
            link_text=translate("back", lang_of(request)),
        )
        resp.headers.update(headers)
        return resp

    purged = [0.0]  # when session_ctx last purged dead sessions

    def session_ctx(request: Request, *, create: bool = True) -> _Ctx:
        now = portal.clock()
        ip = client_ip(request)
        tok = request.cookies.get(SESSION_COOKIE)
        rec = store.get_session(id_hash=hash_token(tok)) if tok and len(tok) < 100 else None
        if rec is not None and rec.ended_at is None:
            expired = expiry_reason(session=rec, limits=session_limits(portal), now=now)
            if expired is None:
                store.touch_session(id_hash=rec.id_hash, now=now)
                return _Ctx(request, rec, None, lang_of(request), ip)
            store.end_session(id_hash=rec.id_hash, now=now)
            if rec.user_id:
                audit(
                    action="session.ended",
                    actor=_actor(rec),
                    outcome="success",
                    client_ip=ip,
                    details={"session": rec.id_hash[:16], "reason": expired},
                )
        if not create:
            raise UnauthenticatedError("You are not signed in.")
        if now - purged[0] >= 60:
            # Each cookieless request makes a row: drop dead ones (anonymous and idle past
            # the limit, or ended longer than a session can last) at most once a minute.
            purged[0] = now
            rules = portal.login_tier.session
            store.purge_sessions(
                anonymous_idle_before=now - rules.idle_timeout_s,
                ended_before=now - rules.max_session_s,
            )
        token = new_token()
        store.create_session(id_hash=hash_token(token), csrf=new_token(), client_ip=ip, now=now)
        rec2 = store.get_session(id_hash=hash_token(token))
        assert rec2 is not None
        return _Ctx(request, rec2, token, lang_of(request), ip)

    def _actor(rec: SessionRecord) -> str:
        return str(rec.state.get("username") or rec.user_id or "anonymous")

    def save(ctx: _Ctx, *, user_id: str | None = None, auth_time: float | None = None) -> None:
        store.save_session(
            id_hash=ctx.session.id_hash,
            user_id=user_id if user_id is not None else ctx.session.user_id,
            state=ctx.state,
            last_seen=portal.clock(),
            auth_time=auth_time if auth_time is not None else ctx.session.auth_time,
        )

    def renew(ctx: _Ctx) -> None:
        token = new_token()
        new_hash = hash_token(token)
        store.rename_session(old_hash=ctx.session.id_hash, new_hash=new_hash, csrf=new_token())
        renamed = store.get_session(id_hash=new_hash)
        if renamed is None:
            raise UnauthenticatedError("The session ended while signing in; sign in again.")
        ctx.session = SessionRecord(**{**renamed.__dict__, "state": ctx.state})
        ctx.token = token

    def check_csrf(ctx: _Ctx, token: str | None) -> None:
        if not csrf_matches(presented=token, expected=ctx.session.csrf):
            audit(
                action="web.csrf.rejected",
                actor=_actor(ctx.session),
                outcome="failure",
                client_ip=ctx.client_ip,
                details={"path": ctx.request.url.path},
            )
            raise ForbiddenError(
                "The form expired or did not come from this site; reload the page."
            )

    def current_user(ctx: _Ctx) -> User | None:
        return store.get_user(user_id=ctx.session.user_id) if ctx.session.user_id else None

    def require_auth(ctx: _Ctx) -> User:
        user = current_user(ctx)
        if user is None or ctx.stage is not Stage.AUTHENTICATED or user.status != "active":
            raise UnauthenticatedError("You are not signed in.")
        return user

    def add_factor(ctx: _Ctx, result: FactorResult) -> None:
        ctx.state.setdefault("factors", []).append(factor_to_json(result, at=portal.clock()))

    def decide(ctx: _Ctx, tier: Tier) -> LoginDecision:
        return evaluate_login(tier=tier, factors=factors_from_json(ctx.state.get("factors", [])))

    def pending_tier(ctx: _Ctx) -> Tier:
        """The tier this sign-in must reach: the login tier, or the stricter tier of a
        client (the audit UI) whose authorization request waits for a step-up."""
        pending = ctx.state.get("authorize")
        name = pending.get("_tier") if isinstance(pending, dict) else None
        return portal.tier(str(name)) if name else portal.login_tier

    # ----- language ---------------------------------------------------------------------
    @app.get("/lang/{code}", response_class=RedirectResponse, status_code=303)
    def set_lang(code: str) -> Response:
        if code not in LANGS:
            raise NotFoundError("Unknown language.")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(LANG_COOKIE, code, secure=True, httponly=True, samesite="lax", path="/")
        return resp

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # ----- login ------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        ctx = session_ctx(request)
        user = current_user(ctx)
        if user is None or ctx.stage is not Stage.AUTHENTICATED:
            return redirect(ctx, "/login")
        enclaves = store.list_enclaves(username=user.username)
        return render(
            ctx,
            "home.html",
            heading=translate("my_enclaves", ctx.lang),
            user=user,
            enclaves=enclaves,
            sessions=store.list_sessions(user_id=user.id),
            current=ctx.session.id_hash,
        )

    def username_form(ctx: _Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
        return render(
            ctx,
            "form.html",
            status=status,
            heading=translate("sign_in", ctx.lang),
            action="/login",
            submit=translate("next", ctx.lang),
            error=error,
            fields=[
                {
                    "name": "username",
                    "label": translate("username", ctx.lang),
                    "type": "text",
                    "autocomplete": "username",
                }
            ],
            below=f'<a href="/invite">{translate("invite", ctx.lang)}</a>',
        )

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Response:
        ctx = session_ctx(request)
        if ctx.stage is Stage.AUTHENTICATED:
            return redirect(ctx, "/")
        return username_form(ctx)

    @app.post("/login", response_class=HTMLResponse)
    def login_username(
        request: Request,
        username: Annotated[str, Form(max_length=256)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        pending = ctx.state.get("authorize")  # an OIDC request waiting for this sign-in
        name = canonical_username(username)
        if name is None:
            # Never stored or logged raw (it becomes the audit actor): the password step
            # answers exactly as for an unknown user, under a placeholder actor.
            audit(
                action="web.request.rejected",
                actor=MALFORMED_USERNAME_ACTOR,
                outcome="failure",
                client_ip=ctx.client_ip,
                details={"path": "/login", "field": "username", "reason": "malformed username"},
            )
            name = ""
        stage = advance(stage=ctx.stage, event=Event.USERNAME_GIVEN)
        ctx.state.clear()
        ctx.state.update(stage=stage, username=name)
        if isinstance(pending, dict):
            ctx.state["authorize"] = pending
        store.save_session(
            id_hash=ctx.session.id_hash,
            user_id=None,
            state=ctx.state,
            last_seen=portal.clock(),
            auth_time=None,
        )
        return redirect(ctx, "/login/password")

    def password_form(ctx: _Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
        return render(
            ctx,
            "form.html",
            status=status,
            heading=translate("sign_in", ctx.lang),
            intro=str(ctx.state.get("username", "")),
            action="/login/password",
            submit=translate("next", ctx.lang),
            error=error,
            fields=[
                {
                    "name": "password",
                    "label": translate("password", ctx.lang),
                    "type": "password",
                    "autocomplete": "current-password",
                }
            ],
        )

    @app.get("/login/password", response_class=HTMLResponse)
    def password_page(request: Request) -> Response:
        ctx = session_ctx(request)
        if ctx.stage is not Stage.USERNAME:
            return redirect(ctx, "/login")
        return password_form(ctx)

    @app.post("/login/password", response_class=HTMLResponse)
    def login_password(
        request: Request,
        password: Annotated[str, Form(max_length=2048)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        if ctx.stage is not Stage.USERNAME:
            return redirect(ctx, "/login")
        try:
            user, result = portal.factors.verify_password(
                username=str(ctx.state["username"]),
                password=password,
                tier=portal.login_tier,
                client_ip=ctx.client_ip,
            )
        except (FactorFailedError, ThrottledError) as e:
            note_retry(ctx, e)
            return password_form(ctx, error=e.message, status=e.status_code)
        stage = advance(stage=ctx.stage, event=Event.PASSWORD_VERIFIED)
        ctx.state.update(stage=stage, factors=[], username=user.username)
        add_factor(ctx, result)
        save(ctx, user_id=user.id)
        return redirect(ctx, "/login/factor")

    def factor_page(
        ctx: _Ctx,
        user: User,
        *,
        base: str,
        heading: str,
        intro: str | None = None,
        reasons: tuple[str, ...] = (),
        error: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        kinds = {c.kind for c in store.list_credentials(user_id=user.id) if not c.disabled}
        return render(
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

    def ceremony_tier(ctx: _Ctx) -> Tier:
        """The tier a factor at ``/login/...`` is checked against: the login tier at
        sign-in, the waiting client's tier on a step-up."""
        return pending_tier(ctx) if ctx.stage is Stage.AUTHENTICATED else portal.login_tier

    def login_user(ctx: _Ctx) -> User:
        user = current_user(ctx)
        if user is None or ctx.stage not in FACTOR_STAGES:
            raise UnauthenticatedError("Start by entering your username and password.")
        return user

    @app.get("/login/factor", response_class=HTMLResponse)
    def second_factor_page(request: Request) -> Response:
        ctx = session_ctx(request)
        stage = ctx.stage
        if stage is Stage.AUTHENTICATED and isinstance(ctx.state.get("authorize"), dict):
            # A client (the audit UI) demands more than this session proved: step up.
            user = require_auth(ctx)
            return factor_page(
                ctx,
                user,
                base="/login",
                heading=translate("stepup", ctx.lang),
                intro=translate("stepup_intro", ctx.lang),
                reasons=decide(ctx, pending_tier(ctx)).reasons,
            )
        if stage is not Stage.PASSWORD:
            return redirect(ctx, "/login")
        user = login_user(ctx)
        return factor_page(ctx, user, base="/login", heading=translate("second_factor", ctx.lang))

    def continue_signed_in(ctx: _Ctx) -> Response:
        pending = ctx.state.get("authorize")
        if isinstance(pending, dict):
            query = {k: v for k, v in pending.items() if not k.startswith("_")}
            return redirect(ctx, "/oidc/authorize?" + urllib.parse.urlencode(query))
        return redirect(ctx, "/")

    def login_factor_verified(ctx: _Ctx, user: User, result: FactorResult) -> Response:
        """A factor verified at ``/login/totp`` or ``/login/webauthn``. On a session that
        is already signed in it is a step-up: the factor is added, the session id is
        rotated and ``auth_time`` (when the sign-in happened) is left as it was."""
        signed_in = ctx.stage is Stage.AUTHENTICATED
        add_factor(ctx, result)
        if not signed_in:
            return finish_login(ctx, user)
        renew(ctx)
        save(ctx)
        audit(
            action="session.stepped_up",
            actor=user.username,
            outcome="success",
            client_ip=ctx.client_ip,
            details={
                "session": ctx.session.id_hash[:16],
                "factor": result.factor.kind.value,
                "category": result.category,
            },
        )
        return continue_signed_in(ctx)

    def finish_login(ctx: _Ctx, user: User) -> Response:
        decision = decide(ctx, portal.login_tier)
        if not decision.allowed:
            save(ctx)
            return factor_page(
                ctx,
                user,
                base="/login",
                heading=translate("second_factor", ctx.lang),
                reasons=decision.reasons,
                status=401,
            )
        now = portal.clock()
        renew(ctx)  # a new session id and CSRF token once authenticated (no fixation)
        ctx.state["stage"] = advance(stage=ctx.stage, event=Event.LOGIN_ALLOWED)
        save(ctx, auth_time=now)
        audit(
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
        return continue_signed_in(ctx)

    @app.post("/login/totp", response_class=HTMLResponse)
    def login_totp(
        request: Request,
        code: Annotated[str, Form(max_length=64)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = login_user(ctx)
        try:
            result = portal.factors.verify_totp(
                user=user, code=code, tier=ceremony_tier(ctx), client_ip=ctx.client_ip
            )
        except (FactorFailedError, ThrottledError, InvalidInputError) as e:
            note_retry(ctx, e)
            return factor_page(
                ctx,
                user,
                base="/login",
                heading=translate("second_factor", ctx.lang),
                error=e.message,
                status=e.status_code,
            )
        return login_factor_verified(ctx, user, result)

    def options_ctx(request: Request, x_csrf_token: str | None) -> _Ctx:
        ctx = session_ctx(request, create=False)
        check_csrf(ctx, x_csrf_token)
        return ctx

    @app.post("/login/webauthn/options")
    def login_webauthn_options(
        request: Request, x_csrf_token: Annotated[str | None, Header(max_length=100)] = None
    ) -> Response:
        ctx = options_ctx(request, x_csrf_token)
        user = login_user(ctx)
        body = portal.factors.begin_webauthn_authentication(
            user=user,
            session_hash=ctx.session.id_hash,
            user_verification=ceremony_tier(ctx).login.webauthn_user_verification,
        )
        return Response(body, media_type="application/json")

    @app.post("/login/webauthn", response_class=HTMLResponse)
    def login_webauthn(
        request: Request,
        credential: Annotated[str, Form(max_length=65536)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = login_user(ctx)
        try:
            result = portal.factors.finish_webauthn_authentication(
                user=user,
                session_hash=ctx.session.id_hash,
                credential_json=credential,
                tier=ceremony_tier(ctx),
                client_ip=ctx.client_ip,
            )
        except (FactorFailedError, ThrottledError, InvalidInputError) as e:
            note_retry(ctx, e)
            return factor_page(
                ctx,
                user,
                base="/login",
                heading=translate("second_factor", ctx.lang),
                error=e.message,
                status=e.status_code,
            )
        return login_factor_verified(ctx, user, result)

    @app.post("/logout", response_class=HTMLResponse)
    def logout(
        request: Request,
        csrf: Annotated[str, Form(max_length=100)],
        everywhere: Annotated[str, Form(max_length=1)] = "0",
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        end_session(ctx, everywhere=everywhere == "1", reason="user signed out")
        return render(
            request,
            "message.html",
            heading=translate("signed_out", lang_of(request)),
            link="/login",
            link_text=translate("sign_in", lang_of(request)),
        )

    def end_session(ctx: _Ctx, *, everywhere: bool, reason: str) -> None:
        user = current_user(ctx)
        if user is not None and everywhere:
            portal.revoke_sessions(user_id=user.id, actor=user.username, reason=reason)
            store.revoke_user_tokens(user_id=user.id)
        if store.end_session(id_hash=ctx.session.id_hash, now=portal.clock()) and user is not None:
            audit(
                action="session.ended",
                actor=user.username,
                outcome="success",
                client_ip=ctx.client_ip,
                details={"session": ctx.session.id_hash[:16], "reason": reason},
            )

    # ----- invitation and enrolment ---------------------------------------------------------
    def invite_form(ctx: _Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
        return render(
            ctx,
            "form.html",
            status=status,
            heading=translate("invite", ctx.lang),
            action="/invite",
            submit=translate("next", ctx.lang),
            error=error,
            fields=[
                {
                    "name": "code",
                    "label": translate("invite_code", ctx.lang),
                    "type": "password",
                    "autocomplete": "off",
                }
            ],
        )

    @app.get("/invite", response_class=HTMLResponse)
    def invite_page(request: Request) -> Response:
        return invite_form(session_ctx(request))

    def set_password_form(ctx: _Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
        return render(
            ctx,
            "form.html",
            status=status,
            heading=translate("invite", ctx.lang),
            intro=translate("set_password", ctx.lang),
            action="/invite/password",
            submit=translate("next", ctx.lang),
            error=error,
            fields=[
                {
                    "name": "password",
                    "label": translate("password", ctx.lang),
                    "type": "password",
                    "autocomplete": "new-password",
                },
                {
                    "name": "password2",
                    "label": translate("password_again", ctx.lang),
                    "type": "password",
                    "autocomplete": "new-password",
                },
            ],
        )

    def invitation_refused(ctx: _Ctx, token_hash: str, *, actor: str = "anonymous") -> Response:
        """Audit a code that is not live (the reason goes to the log only) and answer
        with the one message for every reason."""
        audit(
            action="auth.invitation.rejected",
            actor=actor,
            outcome="failure",
            client_ip=ctx.client_ip,
            details={"reason": store.invitation_refusal(token_hash=token_hash, now=portal.clock())},
        )
        return invite_form(
            ctx, error="That invitation code is not valid, was used, or has expired.", status=400
        )

    @app.post("/invite", response_class=HTMLResponse)
    def invite_code(
        request: Request,
        code: Annotated[str, Form(max_length=200)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        portal.factors._ip_precheck(client_ip=ctx.client_ip)
        token_hash = hash_token(code.strip())
        if store.peek_invitation(token_hash=token_hash, now=portal.clock()) is None:
            # A guess: counted against the address (unknown addresses share one bucket).
            portal.factors.count_address_failure(client_ip=ctx.client_ip)
            return invitation_refused(ctx, token_hash)
        stage = advance(stage=ctx.stage, event=Event.INVITATION_CODE_GIVEN)
        ctx.state.clear()
        ctx.state.update(stage=stage, invite=token_hash)
        save(ctx)
        return set_password_form(ctx)

    @app.post("/invite/password", response_class=HTMLResponse)
    def invite_password(
        request: Request,
        password: Annotated[str, Form(max_length=2048)],
        password2: Annotated[str, Form(max_length=2048)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        if ctx.stage is not Stage.INVITE:
            return redirect(ctx, "/invite")
        if not hmac.compare_digest(password.encode(), password2.encode()):
            return set_password_form(ctx, error="The two passwords differ.", status=400)
        token_hash = str(ctx.state["invite"])
        user_id = store.peek_invitation(token_hash=token_hash, now=portal.clock())
        if user_id is None:  # cancelled, used, expired or its account no longer invited
            ctx.state.clear()
            save(ctx)
            return invitation_refused(ctx, token_hash)
        user = store.get_user(user_id=user_id)
        try:
            # Consume and set the password in one transaction: the loser changes nothing.
            accepted = portal.factors.accept_invitation(
                token_hash=str(ctx.state["invite"]),
                user=user,
                password=password,
                tier=portal.login_tier,
            )
        except InvalidInputError as e:
            return set_password_form(ctx, error=e.message, status=400)
        if not accepted:
            audit(
                action="auth.invitation.rejected",
                actor=user.username,
                outcome="failure",
                client_ip=ctx.client_ip,
                details={"reason": "used or cancelled meanwhile"},
            )
            return invite_form(ctx, error="That invitation was used meanwhile.", status=409)
        audit(
            action="auth.invitation.accepted",
            actor=user.username,
            outcome="success",
            client_ip=ctx.client_ip,
        )
        stage = advance(stage=ctx.stage, event=Event.INVITATION_ACCEPTED)
        ctx.state.clear()
        ctx.state.update(stage=stage, username=user.username)
        renew(ctx)
        save(ctx, user_id=user.id)
        return redirect(ctx, "/enrol")

    def enrol_user(ctx: _Ctx) -> User:
        user = current_user(ctx)
        if user is None or ctx.stage not in ENROL_STAGES:
            raise UnauthenticatedError("Sign in (or accept an invitation) to enrol factors.")
        return user

    def enrol_page(
        ctx: _Ctx,
        user: User,
        *,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> HTMLResponse:
        creds = store.list_credentials(user_id=user.id)
        totp = None
        if not any(c.kind == "totp" for c in creds):
            totp = portal.factors.begin_totp_enrolment(user=user, session_hash=ctx.session.id_hash)
            ctx.state["totp_pending"] = totp.sealed_secret_b64
            save(ctx)
        can_finish = ctx.stage is Stage.ENROL and any(c.kind != "password" for c in creds)
        return render(
            ctx,
            "enrol.html",
            status=status,
            heading=translate("enrol", ctx.lang),
            creds=creds,
            totp=totp,
            webauthn=True,
            can_finish=can_finish,
            error=error,
            notice=notice,
        )

    @app.get("/enrol", response_class=HTMLResponse)
    def enrol(request: Request) -> Response:
        ctx = session_ctx(request)
        return enrol_page(ctx, enrol_user(ctx))

    @app.post("/enrol/totp", response_class=HTMLResponse)
    def enrol_totp(
        request: Request,
        code: Annotated[str, Form(max_length=64)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = enrol_user(ctx)
        pending = ctx.state.get("totp_pending")
        if not isinstance(pending, str):
            raise InvalidInputError(
                "No authenticator-app enrolment is in progress; reload the page."
            )
        try:
            portal.factors.finish_totp_enrolment(
                user=user,
                sealed_secret_b64=pending,
                session_hash=ctx.session.id_hash,
                code=code,
                client_ip=ctx.client_ip,
            )
        except InvalidInputError as e:
            return render(
                ctx,
                "message.html",
                status=400,
                heading=translate("enrol", ctx.lang),
                error=e.message,
                link="/enrol",
                link_text=translate("enrol", ctx.lang),
            )
        ctx.state.pop("totp_pending", None)
        save(ctx)
        return redirect(ctx, "/enrol")

    @app.post("/enrol/webauthn/options")
    def enrol_webauthn_options(
        request: Request, x_csrf_token: Annotated[str | None, Header(max_length=100)] = None
    ) -> Response:
        ctx = options_ctx(request, x_csrf_token)
        user = enrol_user(ctx)
        tiers = [
            portal.login_tier,
            *(portal.tier(e.tier) for e in store.list_enclaves(username=user.username)),
        ]
        body = portal.factors.begin_webauthn_registration(
            user=user,
            session_hash=ctx.session.id_hash,
            user_verification=any(t.login.webauthn_user_verification for t in tiers),
        )
        return Response(body, media_type="application/json")

    @app.post("/enrol/webauthn", response_class=HTMLResponse)
    def enrol_webauthn(
        request: Request,
        credential: Annotated[str, Form(max_length=65536)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = enrol_user(ctx)
        signed_in = ctx.stage is Stage.AUTHENTICATED
        portal.factors.finish_webauthn_registration(
            user=user,
            session_hash=ctx.session.id_hash,
            credential_json=credential,
            client_ip=ctx.client_ip,
            session_aal=decide(ctx, portal.login_tier).aal if signed_in else None,
        )
        return redirect(ctx, "/enrol")

    @app.post("/enrol/done", response_class=HTMLResponse)
    def enrol_done(request: Request, csrf: Annotated[str, Form(max_length=100)]) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        enrol_user(ctx)
        store.end_session(id_hash=ctx.session.id_hash, now=portal.clock())
        return redirect(None, "/login")

    # ----- enclaves: entry and step-up -------------------------------------------------------
    def enclave_for(user: User, name: str) -> EnclaveRecord:
        enc = store.get_enclave(name=name)
        if enc is None or user.username not in {u for u, _ in enc.members}:
            raise NotFoundError("You are not a member of an enclave of that name.")
        return enc

    def entry_check(
        ctx: _Ctx, user: User, enc: EnclaveRecord
    ) -> tuple[Tier, LoginDecision, list[str]]:
        tier = portal.tier(enc.tier)
        decision = decide(ctx, tier)
        blockers: list[str] = []
        net = check_source_network(
            tier=tier, allowlist=list(enc.networks), client_ip=ctx.client_ip or ""
        )
        if not net.allowed:
            blockers.append(f"Entry from your network is not allowed: {net.reason}.")
        auth_time = ctx.session.auth_time or 0.0
        if portal.clock() - auth_time > tier.session.max_session_s:
            blockers.append("Your sign-in is too old for this enclave; sign in again.")
        return tier, decision, blockers

    def refuse(
        ctx: _Ctx,
        user: User,
        enc: EnclaveRecord,
        reasons: list[str] | tuple[str, ...],
        status: int = 403,
    ) -> HTMLResponse:
        audit(
            action="enclave.entry.refused",
            actor=user.username,
            outcome="failure",
            enclave=enc.name,
            client_ip=ctx.client_ip,
            details={"reasons": list(reasons)},
        )
        return render(
            ctx,
            "message.html",
            status=status,
            heading=translate("refused", ctx.lang),
            intro=translate("refused_intro", ctx.lang),
            reasons=list(reasons),
            link="/",
            link_text=translate("back", ctx.lang),
        )

    def after_allowed(
        ctx: _Ctx, user: User, enc: EnclaveRecord, decision: LoginDecision
    ) -> Response:
        audit(
            action="enclave.entry.allowed",
            actor=user.username,
            outcome="success",
            enclave=enc.name,
            client_ip=ctx.client_ip,
            details={
                "amr": list(decision.amr),
                "acr": decision.acr,
                "categories": sorted(c.value for c in decision.categories),
            },
        )
        pending = ctx.state.get("authorize")
        if isinstance(pending, dict) and pending.get("_enclave") == enc.name:
            return redirect(
                ctx,
                "/oidc/authorize?"
                + urllib.parse.urlencode(
                    {k: v for k, v in pending.items() if not k.startswith("_")}
                ),
            )
        if enc.hub_url:
            return redirect(ctx, enc.hub_url)
        return render(
            ctx,
            "message.html",
            heading=translate("allowed", ctx.lang),
            intro=enc.display_name,
            link="/",
            link_text=translate("back", ctx.lang),
        )

    def stepup_page(
        ctx: _Ctx,
        user: User,
        enc: EnclaveRecord,
        decision: LoginDecision,
        error: str | None = None,
        status: int = 401,
    ) -> HTMLResponse:
        return factor_page(
            ctx,
            user,
            base=f"/enclaves/{enc.name}",
            heading=translate("stepup", ctx.lang),
            intro=translate("stepup_intro", ctx.lang),
            reasons=decision.reasons,
            error=error,
            status=status,
        )

    @app.get("/enclaves/{name}", response_class=HTMLResponse)
    def enter_enclave(request: Request, name: str) -> Response:
        ctx = session_ctx(request)
        if ctx.stage is not Stage.AUTHENTICATED:
            return redirect(ctx, "/login")
        user = require_auth(ctx)
        enc = enclave_for(user, name)
        _tier, decision, blockers = entry_check(ctx, user, enc)
        if blockers:
            return refuse(ctx, user, enc, blockers)
        if decision.allowed:
            return after_allowed(ctx, user, enc, decision)
        kinds = {c.kind for c in store.list_credentials(user_id=user.id) if not c.disabled}
        if not kinds & {"webauthn", "totp"}:
            return refuse(ctx, user, enc, decision.reasons)
        audit(
            action="enclave.stepup.required",
            actor=user.username,
            outcome="success",
            enclave=enc.name,
            client_ip=ctx.client_ip,
            details={"reasons": list(decision.reasons)},
        )
        return stepup_page(ctx, user, enc, decision)

    def stepped_up(ctx: _Ctx, user: User, enc: EnclaveRecord, result: FactorResult) -> Response:
        add_factor(ctx, result)
        renew(ctx)  # a new session id at every step-up; auth_time stays the sign-in's
        save(ctx)
        _tier, decision, blockers = entry_check(ctx, user, enc)
        audit(
            action="session.stepped_up",
            actor=user.username,
            outcome="success",
            enclave=enc.name,
            client_ip=ctx.client_ip,
            details={"factor": result.factor.kind.value, "category": result.category},
        )
        if blockers:
            return refuse(ctx, user, enc, blockers)
        if not decision.allowed:
            return refuse(ctx, user, enc, decision.reasons)
        return after_allowed(ctx, user, enc, decision)

    @app.post("/enclaves/{name}/totp", response_class=HTMLResponse)
    def stepup_totp(
        request: Request,
        name: str,
        code: Annotated[str, Form(max_length=64)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = require_auth(ctx)
        enc = enclave_for(user, name)
        tier = portal.tier(enc.tier)
        try:
            result = portal.factors.verify_totp(
                user=user, code=code, tier=tier, client_ip=ctx.client_ip, enclave=enc.name
            )
        except (FactorFailedError, ThrottledError, InvalidInputError) as e:
            note_retry(ctx, e)
            return refuse(ctx, user, enc, [e.message], status=e.status_code)
        return stepped_up(ctx, user, enc, result)

    @app.post("/enclaves/{name}/webauthn/options")
    def stepup_webauthn_options(
        request: Request,
        name: str,
        x_csrf_token: Annotated[str | None, Header(max_length=100)] = None,
    ) -> Response:
        ctx = options_ctx(request, x_csrf_token)
        user = require_auth(ctx)
        enc = enclave_for(user, name)
        body = portal.factors.begin_webauthn_authentication(
            user=user,
            session_hash=ctx.session.id_hash,
            user_verification=portal.tier(enc.tier).login.webauthn_user_verification,
        )
        return Response(body, media_type="application/json")

    @app.post("/enclaves/{name}/webauthn", response_class=HTMLResponse)
    def stepup_webauthn(
        request: Request,
        name: str,
        credential: Annotated[str, Form(max_length=65536)],
        csrf: Annotated[str, Form(max_length=100)],
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        user = require_auth(ctx)
        enc = enclave_for(user, name)
        tier = portal.tier(enc.tier)
        try:
            result = portal.factors.finish_webauthn_authentication(
                user=user,
                session_hash=ctx.session.id_hash,
                credential_json=credential,
                tier=tier,
                client_ip=ctx.client_ip,
                enclave=enc.name,
            )
        except (FactorFailedError, ThrottledError, InvalidInputError) as e:
            note_retry(ctx, e)
            return refuse(
                ctx, user, enc, [e.message, *decide(ctx, tier).reasons], status=e.status_code
            )
        return stepped_up(ctx, user, enc, result)

    # ----- OpenID Connect provider -------------------------------------------------------------
    @app.get("/.well-known/openid-configuration", response_model=Discovery)
    def discovery() -> Discovery:
        return Discovery(
            issuer=issuer,
            authorization_endpoint=f"{issuer}/oidc/authorize",
            token_endpoint=f"{issuer}/oidc/token",
            userinfo_endpoint=f"{issuer}/oidc/userinfo",
            jwks_uri=f"{issuer}/oidc/jwks",
            end_session_endpoint=f"{issuer}/oidc/logout",
            response_types_supported=["code"],
            grant_types_supported=["authorization_code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            code_challenge_methods_supported=["S256"],
            scopes_supported=["openid", "profile", "enclaves"],
            claims_supported=[
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "amr",
                "acr",
                "enclave_factors",
                "enclave_approved",
                "enclaves",
                "roles",
                "preferred_username",
                "name",
                "sid",
            ],
            acr_values_supported=[acr_for_aal(n) for n in (1, 2, 3)],
        )

    @app.get("/oidc/jwks")
    def jwks() -> dict[str, Any]:
        return portal.keys.jwks()

    def auth_error_redirect(
        redirect_uri: str, error: str, desc: str, state: str | None
    ) -> Response:
        q = {"error": error, "error_description": desc}
        if state:
            q["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + sep + urllib.parse.urlencode(q), status_code=303)

    @app.get("/oidc/authorize", response_class=HTMLResponse)
    def authorize(
        request: Request,
        client_id: Annotated[str, Query(max_length=128)] = "",
        redirect_uri: Annotated[str, Query(max_length=2000)] = "",
        response_type: Annotated[str, Query(max_length=64)] = "",
        scope: Annotated[str, Query(max_length=500)] = "",
        state: Annotated[str, Query(max_length=500)] = "",
        nonce: Annotated[str, Query(max_length=500)] = "",
        code_challenge: Annotated[str, Query(max_length=128)] = "",
        code_challenge_method: Annotated[str, Query(max_length=16)] = "",
        prompt: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        # 1-2. The client, its redirect URI and the protocol parameters (_provider).
        try:
            req = check_authorization_request(
                portal=portal,
                client_id=client_id,
                redirect_uri=redirect_uri,
                response_type=response_type,
                scope=scope,
                state=state,
                nonce=nonce,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                client_ip=client_ip(request),
            )
        except AuthorizationRefusedError as e:
            return auth_error_redirect(redirect_uri, e.error, e.message, state)
        ctx = session_ctx(request)
        # 3. The session must have passed the portal login (both factors).
        if ctx.stage is not Stage.AUTHENTICATED:
            if prompt == "none":
                return auth_error_redirect(redirect_uri, "login_required", "Sign-in needed.", state)
            stage = ctx.stage
            if stage is not Stage.PASSWORD:
                ctx.state.clear()
            ctx.state["authorize"] = req.params()
            save(ctx)
            return redirect(ctx, "/login/factor" if stage is Stage.PASSWORD else "/login")
        user = require_auth(ctx)
        # 4. The tier the client demands: a hub its enclave's (with membership and
        # network), any other client (the audit UI) the tier it was registered with.
        if req.client.enclave is None:
            tier = portal.client_tier(req.client)
            decision = decide(ctx, tier)
            refused = client_tier_refusal(ctx, user, req, tier, decision, prompt)
            enclave = None
        else:
            decision_or_refusal = hub_entry(ctx, user, req)
            if isinstance(decision_or_refusal, Response):
                return decision_or_refusal
            decision, refused, enclave = decision_or_refusal, None, req.client.enclave
        if refused is not None:
            return refused
        # 5. A one-time code bound to this request and this sign-in's decision.
        ctx.state.pop("authorize", None)
        save(ctx)
        code = issue_code(
            portal=portal,
            grant=CodeGrant.for_decision(
                request=req,
                user=user,
                decision=decision,
                enclave=enclave,
                session_hash=ctx.session.id_hash,
                auth_time=int(ctx.session.auth_time or portal.clock()),
            ),
            client_ip=ctx.client_ip,
            actor=user.username,
        )
        sep = "&" if "?" in redirect_uri else "?"
        return redirect(
            ctx, redirect_uri + sep + urllib.parse.urlencode({"code": code, "state": state})
        )

    def client_tier_refusal(
        ctx: _Ctx,
        user: User,
        req: AuthorizationRequest,
        tier: Tier,
        decision: LoginDecision,
        prompt: str,
    ) -> Response | None:
        """A client that is not a hub, and a sign-in below its tier: step up or refuse."""
        kinds = frozenset(c.kind for c in store.list_credentials(user_id=user.id) if not c.disabled)
        step = client_step_up(decision=decision, enrolled_kinds=kinds, prompt=prompt)
        if step is StepUp.NOT_NEEDED:
            return None
        audit(
            action="oidc.authorize.stepup" if step is StepUp.STEP_UP else "oidc.authorize.refused",
            actor=user.username,
            outcome="failure",
            client_ip=ctx.client_ip,
            details={
                "client_id": req.client.client_id,
                "tier": tier.id,
                "reasons": list(decision.reasons),
            },
        )
        if step is StepUp.REFUSE:
            return auth_error_redirect(
                req.redirect_uri,
                "access_denied" if prompt != "none" else "interaction_required",
                f"This sign-in does not meet the tier {tier.id} this client demands.",
                req.state,
            )
        ctx.state["authorize"] = {**req.params(), "_tier": tier.id}
        save(ctx)
        return redirect(ctx, "/login/factor")

    def hub_entry(ctx: _Ctx, user: User, req: AuthorizationRequest) -> LoginDecision | Response:
        """An enclave's hub: membership, then the enclave's entry check (a step-up at
        ``/enclaves/{name}`` when it fails); the decision when the user may enter."""
        enc = store.get_enclave(name=str(req.client.enclave))
        if enc is None or user.username not in {u for u, _ in enc.members}:
            audit(
                action="oidc.authorize.refused",
                actor=user.username,
                outcome="failure",
                enclave=req.client.enclave,
                client_ip=ctx.client_ip,
                details={"client_id": req.client.client_id, "reason": "not a member"},
            )
            return auth_error_redirect(
                req.redirect_uri,
                "access_denied",
                "You are not a member of this enclave.",
                req.state,
            )
        _tier, decision, blockers = entry_check(ctx, user, enc)
        if blockers or not decision.allowed:
            ctx.state["authorize"] = {**req.params(), "_enclave": enc.name}
            save(ctx)
            audit(
                action="oidc.authorize.stepup",
                actor=user.username,
                outcome="failure",
                enclave=enc.name,
                client_ip=ctx.client_ip,
                details={
                    "client_id": req.client.client_id,
                    "reasons": [*blockers, *decision.reasons],
                },
            )
            return redirect(ctx, f"/enclaves/{enc.name}")
        return decision

    def oauth_error(error: str, desc: str, status: int = 400) -> JSONResponse:
        headers = {"WWW-Authenticate": "Basic"} if status == 401 else {}
        return JSONResponse(
            {"error": error, "error_description": desc}, status_code=status, headers=headers
        )

    @app.post(
        "/oidc/token",
        response_model=TokenResponse,
        responses={400: {"model": OAuthError}, 401: {"model": OAuthError}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM_SCHEMA}},
            }
        },
    )
    async def token_endpoint(request: Request) -> Response:
        # The hottest endpoint parses its small form itself (RFC 6749 section 3.2:
        # urlencoded, each parameter at most once) instead of FastAPI's generic path.
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return oauth_error(
                "invalid_request", "The body must be application/x-www-form-urlencoded."
            )
        body = await request.body()
        if len(body) > 8192:
            return oauth_error("invalid_request", "The request body is larger than 8 KiB.")
        try:
            pairs = urllib.parse.parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=16,
            )
        except (UnicodeDecodeError, ValueError):
            return oauth_error(
                "invalid_request", "The form body is not valid UTF-8 urlencoded data."
            )
        form: dict[str, str] = {}
        for k, v in pairs:
            if k in form:
                return oauth_error("invalid_request", f"The parameter {k[:40]!r} appears twice.")
            form[k] = v
        limits = {
            "grant_type": 64,
            "code": 200,
            "redirect_uri": 2000,
            "code_verifier": 200,
            "client_id": 128,
            "client_secret": 200,
        }
        for k, n in limits.items():
            if len(form.get(k, "")) > n:
                return oauth_error("invalid_request", f"The parameter {k} is longer than {n}.")
        auth_header = request.headers.get("authorization")
        if auth_header is not None and len(auth_header) > 1000:
            return oauth_error("invalid_request", "The Authorization header is too long.")
        return await run_in_threadpool(token, client_ip(request), form, auth_header)

    def token(ip: str | None, form: dict[str, str], authorization: str | None) -> Response:
        try:
            client = authenticate_client(
                portal=portal,
                client_id=form.get("client_id", ""),
                client_secret=form.get("client_secret", ""),
                authorization=authorization,
                client_ip=ip,
            )
            grant = redeem_code(
                portal=portal,
                client=client,
                grant_type=form.get("grant_type", ""),
                code=form.get("code", ""),
                redirect_uri=form.get("redirect_uri", ""),
                code_verifier=form.get("code_verifier", ""),
                client_ip=ip,
            )
        except TokenRefusedError as e:
            return oauth_error(e.error, e.message, 401 if e.error == "invalid_client" else 400)
        return JSONResponse(asdict(grant), headers={"Pragma": "no-cache"})

    @app.get("/oidc/userinfo")
    def userinfo(authorization: Annotated[str | None, Header(max_length=1000)] = None) -> Response:
        try:
            info = provider_userinfo(portal=portal, authorization=authorization)
        except BearerRefusedError as e:
            challenge = "Bearer" if e.error is None else f'Bearer error="{e.error}"'
            return JSONResponse(
                {"detail": e.message}, status_code=401, headers={"WWW-Authenticate": challenge}
            )
        return JSONResponse(asdict(info))

    @app.get("/oidc/logout", response_class=HTMLResponse)
    def end_session_endpoint(
        request: Request,
        id_token_hint: Annotated[str, Query(max_length=16384)] = "",
        post_logout_redirect_uri: Annotated[str, Query(max_length=2000)] = "",
        state: Annotated[str, Query(max_length=500)] = "",
        client_id: Annotated[str, Query(max_length=128)] = "",
    ) -> Response:
        ctx = session_ctx(request)
        hint_ok = False
        if id_token_hint:
            try:
                claims = portal.keys.verify(id_token_hint)
            except InvalidInputError:
                claims = {}
            hint_ok = bool(claims) and claims.get("sid") == ctx.session.id_hash[:32]
            aud = claims.get("aud", "")
            auds = [str(a) for a in aud] if isinstance(aud, list) else [str(aud)]
            if claims and client_id and client_id not in auds:
                # RP-Initiated Logout 1.0 §2: both given, they must name the same client.
                audit(
                    action="web.request.rejected",
                    actor=_actor(ctx.session),
                    outcome="failure",
                    client_ip=ctx.client_ip,
                    details={
                        "path": "/oidc/logout",
                        "field": "client_id",
                        "reason": "client_id differs from the id_token_hint audience",
                    },
                )
                raise InvalidInputError(
                    "client_id does not name the client the id_token_hint was issued to."
                )
            client_id = client_id or auds[0]
        client = store.get_client(client_id=client_id) if client_id else None
        target = None
        if post_logout_redirect_uri:
            if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
                raise InvalidInputError(
                    "post_logout_redirect_uri is not registered for this client."
                )
            target = post_logout_redirect_uri
        if not hint_ok:
            # Without proof that this session's client asked, confirm (CSRF-safe).
            return render(
                ctx,
                "logout.html",
                heading=translate("sign_out", ctx.lang),
                redirect=target,
                state=state,
                client_id=client_id,
            )
        end_session(ctx, everywhere=False, reason="RP-initiated logout")
        return logged_out(request, target, state)

    def logged_out(request: Request, target: str | None, state: str) -> Response:
        if target:
            sep = "&" if "?" in target else "?"
            return RedirectResponse(
                target + (sep + urllib.parse.urlencode({"state": state}) if state else ""),
                status_code=303,
            )
        return render(
            request,
            "message.html",
            heading=translate("signed_out", lang_of(request)),
            link="/login",
            link_text=translate("sign_in", lang_of(request)),
        )

    @app.post("/oidc/logout", response_class=HTMLResponse)
    def end_session_confirm(
        request: Request,
        csrf: Annotated[str, Form(max_length=100)],
        post_logout_redirect_uri: Annotated[str, Form(max_length=2000)] = "",
        state: Annotated[str, Form(max_length=500)] = "",
        client_id: Annotated[str, Form(max_length=128)] = "",
    ) -> Response:
        ctx = session_ctx(request)
        check_csrf(ctx, csrf)
        target = None
        if post_logout_redirect_uri:
            client = store.get_client(client_id=client_id) if client_id else None
            if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
                raise InvalidInputError(
                    "post_logout_redirect_uri is not registered for this client."
                )
            target = post_logout_redirect_uri
        end_session(ctx, everywhere=False, reason="RP-initiated logout")
        return logged_out(request, target, state)

    # ----- admin API --------------------------------------------------------------------------

    @app.post("/api/admin/users", response_model=InviteResponse, status_code=201)
    def api_invite(body: InviteRequest, actor: Admin) -> InviteResponse:
        inv = portal.invite_user(
            username=body.username,
            display_name=body.display_name,
            roles=body.roles,
            locale=body.locale,
            actor=actor,
        )
        return InviteResponse(
            username=inv.username, invitation_code=inv.code, expires_at=int(inv.expires_at)
        )

    def user_out(u: User) -> UserOut:
        return UserOut(
            username=u.username,
            display_name=u.display_name,
            roles=sorted(u.roles),
            status=u.status,
            credentials=[
                {
                    "id": c.id,
                    "kind": c.kind,
                    "approved": c.approved,
                    "disabled": c.disabled,
                    "failures": c.failures,
                    "backup_eligible": c.backup_eligible,
                    "biometric_attested": c.biometric_attested,
                    "aaguid": c.aaguid,
                }
                for c in store.list_credentials(user_id=u.id)
            ],
        )

    @app.get("/api/admin/users", response_model=list[UserOut])
    def api_users(actor: Admin) -> list[UserOut]:
        return [user_out(u) for u in store.list_users()]

    @app.post("/api/admin/users/{username}/disable", response_model=UserOut)
    def api_disable(username: str, actor: Admin) -> UserOut:
        portal.disable_user(username=username, actor=actor)
        return user_out(portal.user(username))

    @app.post(
        "/api/admin/users/{username}/credentials/{credential_id}/approve", response_model=UserOut
    )
    def api_approve(username: str, credential_id: str, actor: Admin) -> UserOut:
        portal.approve_credential(username=username, credential_id=credential_id, actor=actor)
        return user_out(portal.user(username))

    @app.post("/api/admin/users/{username}/rebind", response_model=InviteResponse)
    def api_rebind(username: str, actor: Admin) -> InviteResponse:
        inv = portal.rebind_user(username=username, actor=actor)
        return InviteResponse(
            username=inv.username, invitation_code=inv.code, expires_at=int(inv.expires_at)
        )

    def enclave_out(
        e: EnclaveRecord, client_id: str | None = None, secret: str | None = None
    ) -> EnclaveOut:
        return EnclaveOut(**portal.describe_enclave(e), client_id=client_id, client_secret=secret)

    @app.put("/api/admin/enclaves/{name}", response_model=EnclaveOut)
    def api_register(name: str, body: EnclaveIn, actor: Admin) -> EnclaveOut:
        if body.client is not None and body.client.tier is not None:
            raise InvalidInputError(
                "An enclave's hub demands its enclave's tier; omit client.tier."
            )
        reg = portal.register_enclave(
            name=name,
            tier=body.tier,
            display_name=body.display_name,
            members=[(m.user, m.role) for m in body.members],
            networks=body.networks,
            hub_url=body.hub_url,
            client_id=body.client.client_id if body.client else None,
            redirect_uris=body.client.redirect_uris if body.client else [],
            post_logout_redirect_uris=body.client.post_logout_redirect_uris if body.client else [],
            rotate_secret=body.client.rotate_secret if body.client else False,
            actor=actor,
        )
        return enclave_out(
            reg.enclave, reg.client.client_id if reg.client else None, reg.client_secret
        )

    @app.get("/api/admin/enclaves", response_model=list[EnclaveOut])
    def api_enclaves(actor: Admin) -> list[EnclaveOut]:
        return [enclave_out(e) for e in store.list_enclaves()]

    @app.delete("/api/admin/enclaves/{name}", status_code=204)
    def api_remove(name: str, actor: Admin) -> Response:
        portal.remove_enclave(name=name, actor=actor)
        return Response(status_code=204)

    @app.post("/api/admin/clients", response_model=ClientOut, status_code=201)
    def api_client(body: ClientIn, actor: Admin) -> ClientOut:
        secret = portal.register_client(
            client_id=body.client_id,
            redirect_uris=body.redirect_uris,
            post_logout_redirect_uris=body.post_logout_redirect_uris,
            tier=body.tier,
            actor=actor,
        )
        return ClientOut(client_id=body.client_id, client_secret=secret)

    @app.get("/api/admin/sessions", response_model=list[SessionOut])
    def api_sessions(actor: Admin) -> list[SessionOut]:
        return [
            SessionOut(
                session=r.id_hash[:16],
                user_id=r.user_id,
                client_ip=r.client_ip,
                created_at=r.created_at,
                last_seen=r.last_seen,
            )
            for r in store.list_sessions()
        ]

    @app.delete("/api/admin/sessions/{session}", status_code=204)
    def api_revoke_session(session: str, actor: Admin) -> Response:
        matches = (
            [r for r in store.list_sessions() if r.id_hash.startswith(session)]
            if len(session) >= 8
            else []
        )
        if len(matches) != 1:
            raise NotFoundError("No single active session starts with that id.")
        store.end_session(id_hash=matches[0].id_hash, now=portal.clock())
        audit(
            action="session.ended",
            actor=actor,
            outcome="success",
            details={"session": matches[0].id_hash[:16], "reason": "revoked by officer"},
        )
        return Response(status_code=204)

    @app.post("/api/admin/keys/rotate")
    def api_rotate(actor: Admin) -> dict[str, str]:
        return {"kid": rotate_signing_key(portal=portal, actor=actor).kid}

    # The token endpoint is the hottest route: match it first (paths do not overlap).
    app.router.routes.sort(key=lambda r: getattr(r, "path", "") != "/oidc/token")
    return app
