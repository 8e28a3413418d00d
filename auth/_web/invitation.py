"""Invitation pages: an invitation code, then the new password."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from .._app import Ctx, Web, WebDep
from .._crypto import hash_token
from .._errors import (
    InvalidInputError,
)
from .._forms import PasswordField, PostedForm
from .._i18n import translate
from .._session import Event, Stage, advance

__all__ = ["router"]

router = APIRouter()


def invite_form(web: Web, ctx: Ctx, error: str | None = None, status: int = 200) -> HTMLResponse:
    return web.form(
        ctx,
        heading=translate("invite", ctx.lang),
        action="/invite",
        fields=[("code", "invite_code", "password", "off")],
        error=error,
        status=status,
    )


@router.get("/invite", response_class=HTMLResponse)
def invite_page(web: WebDep, request: Request) -> Response:
    return invite_form(web, web.session_ctx(request))


def set_password_form(
    web: Web, ctx: Ctx, error: str | None = None, status: int = 200
) -> HTMLResponse:
    return web.form(
        ctx,
        heading=translate("invite", ctx.lang),
        action="/invite/password",
        fields=[
            ("password", "password", "password", "new-password"),
            ("password2", "password_again", "password", "new-password"),
        ],
        error=error,
        status=status,
        intro=translate("set_password", ctx.lang),
    )


def invitation_refused(
    web: Web, ctx: Ctx, token_hash: str, *, actor: str = "anonymous"
) -> Response:
    """Audit a code that is not live (the reason goes to the log only) and answer
    with the one message for every reason."""
    web.audit(
        action="auth.invitation.rejected",
        actor=actor,
        outcome="failure",
        client_ip=ctx.client_ip,
        details={
            "reason": web.store.invitation_refusal(token_hash=token_hash, now=web.portal.clock())
        },
    )
    return invite_form(
        web, ctx, error="That invitation code is not valid, was used, or has expired.", status=400
    )


@router.post("/invite", response_class=HTMLResponse)
def invite_code(
    web: WebDep, post: PostedForm, code: Annotated[str, Form(max_length=200)]
) -> Response:
    ctx = web.posted(post)
    web.portal.factors._ip_precheck(client_ip=ctx.client_ip)
    token_hash = hash_token(code.strip())
    if web.store.peek_invitation(token_hash=token_hash, now=web.portal.clock()) is None:
        # A guess: counted against the address (unknown addresses share one bucket).
        web.portal.factors.count_address_failure(client_ip=ctx.client_ip)
        return invitation_refused(web, ctx, token_hash)
    stage = advance(stage=ctx.stage, event=Event.INVITATION_CODE_GIVEN)
    ctx.state.clear()
    ctx.state.update(stage=stage, invite=token_hash)
    web.save(ctx)
    return set_password_form(web, ctx)


@router.post("/invite/password", response_class=HTMLResponse)
def invite_password(
    web: WebDep, post: PostedForm, password: PasswordField, password2: PasswordField
) -> Response:
    ctx = web.posted(post)
    if ctx.stage is not Stage.INVITE:
        return web.redirect(ctx, "/invite")
    if not hmac.compare_digest(password.encode(), password2.encode()):
        return set_password_form(web, ctx, error="The two passwords differ.", status=400)
    token_hash = str(ctx.state["invite"])
    user_id = web.store.peek_invitation(token_hash=token_hash, now=web.portal.clock())
    if user_id is None:  # cancelled, used, expired or its account no longer invited
        ctx.state.clear()
        web.save(ctx)
        return invitation_refused(web, ctx, token_hash)
    user = web.store.get_user(user_id=user_id)
    try:
        # Consume and set the password in one transaction: the loser changes nothing.
        accepted = web.portal.factors.accept_invitation(
            token_hash=str(ctx.state["invite"]),
            user=user,
            password=password,
            tier=web.portal.login_tier,
        )
    except InvalidInputError as e:
        return set_password_form(web, ctx, error=e.message, status=400)
    if not accepted:
        web.audit(
            action="auth.invitation.rejected",
            actor=user.username,
            outcome="failure",
            client_ip=ctx.client_ip,
            details={"reason": "used or cancelled meanwhile"},
        )
        return invite_form(web, ctx, error="That invitation was used meanwhile.", status=409)
    web.audit(
        action="auth.invitation.accepted",
        actor=user.username,
        outcome="success",
        client_ip=ctx.client_ip,
    )
    stage = advance(stage=ctx.stage, event=Event.INVITATION_ACCEPTED)
    ctx.state.clear()
    ctx.state.update(stage=stage, username=user.username)
    web.renew(ctx)
    web.save(ctx, user_id=user.id)
    return web.redirect(ctx, "/enrol")
