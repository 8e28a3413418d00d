"""Sign-in pages: language, home, username, password, second factor, sign-out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from .._app import FACTOR_ERRORS, LANG_COOKIE, Ctx, Web, WebDep, status_of
from .._errors import (
    FactorFailedError,
    NotFoundError,
    ThrottledError,
)
from .._factors import MALFORMED_USERNAME_ACTOR, FactorResult
from .._forms import CodeField, CredentialField, PasswordField, PostedForm, ScriptPost
from .._i18n import LANGS, translate
from .._names import canonical_username
from .._policy import Tier
from .._session import Event, Stage, advance
from .._store import User

__all__ = ["router"]

router = APIRouter()


@router.get("/lang/{code}", response_class=RedirectResponse, status_code=303)
def set_lang(code: str) -> Response:
    if code not in LANGS:
        raise NotFoundError("Unknown language.")
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(LANG_COOKIE, code, secure=True, httponly=True, samesite="lax", path="/")
    return resp


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/", response_class=HTMLResponse)
def home(web: WebDep, request: Request) -> Response:
    ctx = web.session_ctx(request)
    user = web.current_user(ctx)
    if user is None or ctx.stage is not Stage.AUTHENTICATED:
        return web.redirect(ctx, "/login")
    enclaves = web.store.list_enclaves(username=user.username)
    return web.render(
        ctx,
        "home.html",
        heading=translate("my_enclaves", ctx.lang),
        user=user,
        enclaves=enclaves,
        sessions=web.store.list_sessions(user_id=user.id),
        current=ctx.session.id_hash,
    )


def username_form(web: Web, ctx: Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
    return web.form(
        ctx,
        heading=translate("sign_in", ctx.lang),
        action="/login",
        fields=[("username", "username", "text", "username")],
        error=error,
        status=status,
        below=f'<a href="/invite">{translate("invite", ctx.lang)}</a>',
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(web: WebDep, request: Request) -> Response:
    ctx = web.session_ctx(request)
    if ctx.stage is Stage.AUTHENTICATED:
        return web.redirect(ctx, "/")
    return username_form(web, ctx)


@router.post("/login", response_class=HTMLResponse)
def login_username(
    web: WebDep, post: PostedForm, username: Annotated[str, Form(max_length=256)]
) -> Response:
    ctx = web.posted(post)
    pending = ctx.state.get("authorize")  # an OIDC request waiting for this sign-in
    name = canonical_username(username)
    if name is None:
        # Never stored or logged raw (it becomes the audit actor): the password step
        # answers exactly as for an unknown user, under a placeholder actor.
        web.audit(
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
    web.store.save_session(
        id_hash=ctx.session.id_hash,
        user_id=None,
        state=ctx.state,
        last_seen=web.portal.clock(),
        auth_time=None,
    )
    return web.redirect(ctx, "/login/password")


def password_form(web: Web, ctx: Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
    return web.form(
        ctx,
        heading=translate("sign_in", ctx.lang),
        action="/login/password",
        fields=[("password", "password", "password", "current-password")],
        error=error,
        status=status,
        intro=str(ctx.state.get("username", "")),
    )


@router.get("/login/password", response_class=HTMLResponse)
def password_page(web: WebDep, request: Request) -> Response:
    ctx = web.session_ctx(request)
    if ctx.stage is not Stage.USERNAME:
        return web.redirect(ctx, "/login")
    return password_form(web, ctx)


@router.post("/login/password", response_class=HTMLResponse)
def login_password(web: WebDep, post: PostedForm, password: PasswordField) -> Response:
    ctx = web.posted(post)
    if ctx.stage is not Stage.USERNAME:
        return web.redirect(ctx, "/login")
    try:
        user, result = web.portal.factors.verify_password(
            username=str(ctx.state["username"]),
            password=password,
            tier=web.portal.login_tier,
            client_ip=ctx.client_ip,
        )
    except (FactorFailedError, ThrottledError) as e:
        web.note_retry(ctx, e)
        return password_form(web, ctx, error=e.message, status=status_of(e))
    stage = advance(stage=ctx.stage, event=Event.PASSWORD_VERIFIED)
    ctx.state.update(stage=stage, factors=[], username=user.username)
    web.add_factor(ctx, result)
    web.save(ctx, user_id=user.id)
    return web.redirect(ctx, "/login/factor")


@router.get("/login/factor", response_class=HTMLResponse)
def second_factor_page(web: WebDep, request: Request) -> Response:
    ctx = web.session_ctx(request)
    stage = ctx.stage
    if stage is Stage.AUTHENTICATED and isinstance(ctx.state.get("authorize"), dict):
        # A client (the audit UI) demands more than this session proved: step up.
        user = web.require_auth(ctx)
        return web.factor_page(
            ctx,
            user,
            base="/login",
            heading=translate("stepup", ctx.lang),
            intro=translate("stepup_intro", ctx.lang),
            reasons=web.decide(ctx, web.pending_tier(ctx)).reasons,
        )
    if stage is not Stage.PASSWORD:
        return web.redirect(ctx, "/login")
    user = web.login_user(ctx)
    return web.factor_page(ctx, user, base="/login", heading=translate("second_factor", ctx.lang))


def login_factor_verified(web: Web, ctx: Ctx, user: User, result: FactorResult) -> Response:
    """A factor verified at ``/login/totp`` or ``/login/webauthn``. On a session that
    is already signed in it is a step-up: the factor is added, the session id is
    rotated and ``auth_time`` (when the sign-in happened) is left as it was."""
    signed_in = ctx.stage is Stage.AUTHENTICATED
    web.add_factor(ctx, result)
    if not signed_in:
        return web.finish_login(ctx, user)
    web.renew(ctx)
    web.save(ctx)
    web.audit(
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
    return web.continue_signed_in(ctx)


def totp_check(
    web: Web, ctx: Ctx, user: User, code: str, *, enclave: str | None = None
) -> Callable[[Tier], FactorResult]:
    """The TOTP step of a sign-in (or, with ``enclave``, of a step-up there), to be
    checked against the tier the caller decides."""
    return lambda tier: web.portal.factors.verify_totp(
        user=user, code=code, tier=tier, client_ip=ctx.client_ip, enclave=enclave
    )


def webauthn_check(
    web: Web, ctx: Ctx, user: User, credential: str, *, enclave: str | None = None
) -> Callable[[Tier], FactorResult]:
    """The WebAuthn assertion of a sign-in (or, with ``enclave``, of a step-up there),
    to be checked against the tier the caller decides."""
    return lambda tier: web.portal.factors.finish_webauthn_authentication(
        user=user,
        session_hash=ctx.session.id_hash,
        credential_json=credential,
        tier=tier,
        client_ip=ctx.client_ip,
        enclave=enclave,
    )


def present_factor(
    web: Web, ctx: Ctx, user: User, verify: Callable[[Tier], FactorResult]
) -> Response:
    """Check a factor at ``/login/...`` against the sign-in's (or step-up's) tier; a
    failure redraws the factor page with its status."""
    try:
        result = verify(web.ceremony_tier(ctx))
    except FACTOR_ERRORS as e:
        web.note_retry(ctx, e)
        return web.factor_page(
            ctx,
            user,
            base="/login",
            heading=translate("second_factor", ctx.lang),
            error=e.message,
            status=status_of(e),
        )
    return login_factor_verified(web, ctx, user, result)


@router.post("/login/totp", response_class=HTMLResponse)
def login_totp(web: WebDep, post: PostedForm, code: CodeField) -> Response:
    ctx = web.posted(post)
    user = web.login_user(ctx)
    return present_factor(web, ctx, user, totp_check(web, ctx, user, code))


@router.post("/login/webauthn/options")
def login_webauthn_options(web: WebDep, post: ScriptPost) -> Response:
    ctx = web.options_ctx(post)
    user = web.login_user(ctx)
    return web.authentication_options(ctx, user, tier=web.ceremony_tier(ctx))


@router.post("/login/webauthn", response_class=HTMLResponse)
def login_webauthn(web: WebDep, post: PostedForm, credential: CredentialField) -> Response:
    ctx = web.posted(post)
    user = web.login_user(ctx)
    return present_factor(web, ctx, user, webauthn_check(web, ctx, user, credential))


@router.post("/logout", response_class=HTMLResponse)
def logout(
    web: WebDep, post: PostedForm, everywhere: Annotated[str, Form(max_length=1)] = "0"
) -> Response:
    ctx = web.posted(post)
    web.end_session(ctx, everywhere=everywhere == "1", reason="user signed out")
    return web.signed_out(post.request)
