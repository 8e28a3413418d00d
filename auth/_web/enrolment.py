"""Enrolment pages: the authenticator app and security keys of a user."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from .._app import Ctx, Web, WebDep
from .._errors import (
    InvalidInputError,
)
from .._forms import CodeField, CredentialField, PostedForm, ScriptPost
from .._i18n import translate
from .._session import Stage
from .._store import User

__all__ = ["router"]

router = APIRouter()


def enrol_page(
    web: Web,
    ctx: Ctx,
    user: User,
    *,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    creds = web.store.list_credentials(user_id=user.id)
    totp = None
    if not any(c.kind == "totp" for c in creds):
        totp = web.portal.factors.begin_totp_enrolment(user=user, session_hash=ctx.session.id_hash)
        ctx.state["totp_pending"] = totp.sealed_secret_b64
        web.save(ctx)
    can_finish = ctx.stage is Stage.ENROL and any(c.kind != "password" for c in creds)
    return web.render(
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


@router.get("/enrol", response_class=HTMLResponse)
def enrol(web: WebDep, request: Request) -> Response:
    ctx = web.session_ctx(request)
    return enrol_page(web, ctx, web.enrol_user(ctx))


@router.post("/enrol/totp", response_class=HTMLResponse)
def enrol_totp(web: WebDep, post: PostedForm, code: CodeField) -> Response:
    ctx = web.posted(post)
    user = web.enrol_user(ctx)
    pending = ctx.state.get("totp_pending")
    if not isinstance(pending, str):
        raise InvalidInputError("No authenticator-app enrolment is in progress; reload the page.")
    try:
        web.portal.factors.finish_totp_enrolment(
            user=user,
            sealed_secret_b64=pending,
            session_hash=ctx.session.id_hash,
            code=code,
            client_ip=ctx.client_ip,
        )
    except InvalidInputError as e:
        return web.render(
            ctx,
            "message.html",
            status=400,
            heading=translate("enrol", ctx.lang),
            error=e.message,
            link="/enrol",
            link_text=translate("enrol", ctx.lang),
        )
    ctx.state.pop("totp_pending", None)
    web.save(ctx)
    return web.redirect(ctx, "/enrol")


@router.post("/enrol/webauthn/options")
def enrol_webauthn_options(web: WebDep, post: ScriptPost) -> Response:
    ctx = web.options_ctx(post)
    user = web.enrol_user(ctx)
    tiers = [
        web.portal.login_tier,
        *(web.portal.tier(e.tier) for e in web.store.list_enclaves(username=user.username)),
    ]
    body = web.portal.factors.begin_webauthn_registration(
        user=user,
        session_hash=ctx.session.id_hash,
        user_verification=any(t.login.webauthn_user_verification for t in tiers),
    )
    return Response(body, media_type="application/json")


@router.post("/enrol/webauthn", response_class=HTMLResponse)
def enrol_webauthn(web: WebDep, post: PostedForm, credential: CredentialField) -> Response:
    ctx = web.posted(post)
    user = web.enrol_user(ctx)
    signed_in = ctx.stage is Stage.AUTHENTICATED
    web.portal.factors.finish_webauthn_registration(
        user=user,
        session_hash=ctx.session.id_hash,
        credential_json=credential,
        client_ip=ctx.client_ip,
        session_aal=web.decide(ctx, web.portal.login_tier).aal if signed_in else None,
    )
    return web.redirect(ctx, "/enrol")


@router.post("/enrol/done", response_class=HTMLResponse)
def enrol_done(web: WebDep, post: PostedForm) -> Response:
    ctx = web.posted(post)
    web.enrol_user(ctx)
    web.store.end_session(id_hash=ctx.session.id_hash, now=web.portal.clock())
    return web.redirect(None, "/login")
