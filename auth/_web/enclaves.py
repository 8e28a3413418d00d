"""Enclave entry: membership, network and tier checks, and the step-up there."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from .._app import FACTOR_ERRORS, Ctx, Web, WebDep, status_of
from .._errors import (
    NotFoundError,
)
from .._factors import FactorResult
from .._forms import CodeField, CredentialField, Post, PostedForm, ScriptPost
from .._i18n import translate
from .._policy import LoginDecision, Tier
from .._session import Stage
from .._store import EnclaveRecord, User
from .login import totp_check, webauthn_check

__all__ = ["router"]

router = APIRouter()


def enclave_for(web: Web, user: User, name: str) -> EnclaveRecord:
    enc = web.store.get_enclave(name=name)
    if enc is None or user.username not in {u for u, _ in enc.members}:
        raise NotFoundError("You are not a member of an enclave of that name.")
    return enc


def refuse(
    web: Web,
    ctx: Ctx,
    user: User,
    enc: EnclaveRecord,
    reasons: list[str] | tuple[str, ...],
    status: int = 403,
) -> HTMLResponse:
    web.audit(
        action="enclave.entry.refused",
        actor=user.username,
        outcome="failure",
        enclave=enc.name,
        client_ip=ctx.client_ip,
        details={"reasons": list(reasons)},
    )
    return web.render(
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
    web: Web, ctx: Ctx, user: User, enc: EnclaveRecord, decision: LoginDecision
) -> Response:
    web.audit(
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
        return web.redirect(
            ctx,
            "/oidc/authorize?"
            + urllib.parse.urlencode({k: v for k, v in pending.items() if not k.startswith("_")}),
        )
    if enc.hub_url:
        return web.redirect(ctx, enc.hub_url)
    return web.render(
        ctx,
        "message.html",
        heading=translate("allowed", ctx.lang),
        intro=enc.display_name,
        link="/",
        link_text=translate("back", ctx.lang),
    )


def stepup_page(
    web: Web,
    ctx: Ctx,
    user: User,
    enc: EnclaveRecord,
    decision: LoginDecision,
    error: str | None = None,
    status: int = 401,
) -> HTMLResponse:
    return web.factor_page(
        ctx,
        user,
        base=f"/enclaves/{enc.name}",
        heading=translate("stepup", ctx.lang),
        intro=translate("stepup_intro", ctx.lang),
        reasons=decision.reasons,
        error=error,
        status=status,
    )


@router.get("/enclaves/{name}", response_class=HTMLResponse)
def enter_enclave(web: WebDep, request: Request, name: str) -> Response:
    ctx = web.session_ctx(request)
    if ctx.stage is not Stage.AUTHENTICATED:
        return web.redirect(ctx, "/login")
    user = web.require_auth(ctx)
    enc = enclave_for(web, user, name)
    _tier, decision, blockers = web.entry_check(ctx, user, enc)
    if blockers:
        return refuse(web, ctx, user, enc, blockers)
    if decision.allowed:
        return after_allowed(web, ctx, user, enc, decision)
    kinds = {c.kind for c in web.store.list_credentials(user_id=user.id) if not c.disabled}
    if not kinds & {"webauthn", "totp"}:
        return refuse(web, ctx, user, enc, decision.reasons)
    web.audit(
        action="enclave.stepup.required",
        actor=user.username,
        outcome="success",
        enclave=enc.name,
        client_ip=ctx.client_ip,
        details={"reasons": list(decision.reasons)},
    )
    return stepup_page(web, ctx, user, enc, decision)


def stepped_up(
    web: Web, ctx: Ctx, user: User, enc: EnclaveRecord, result: FactorResult
) -> Response:
    web.add_factor(ctx, result)
    web.renew(ctx)  # a new session id at every step-up; auth_time stays the sign-in's
    web.save(ctx)
    _tier, decision, blockers = web.entry_check(ctx, user, enc)
    web.audit(
        action="session.stepped_up",
        actor=user.username,
        outcome="success",
        enclave=enc.name,
        client_ip=ctx.client_ip,
        details={"factor": result.factor.kind.value, "category": result.category},
    )
    if blockers:
        return refuse(web, ctx, user, enc, blockers)
    if not decision.allowed:
        return refuse(web, ctx, user, enc, decision.reasons)
    return after_allowed(web, ctx, user, enc, decision)


def present_factor(
    web: Web,
    ctx: Ctx,
    user: User,
    enc: EnclaveRecord,
    verify: Callable[[Tier], FactorResult],
    *,
    with_reasons: bool,
) -> Response:
    """Check a step-up factor against the enclave's tier; a failure is a refusal page
    (with what the tier still lacks when ``with_reasons``)."""
    tier = web.portal.tier(enc.tier)
    try:
        result = verify(tier)
    except FACTOR_ERRORS as e:
        web.note_retry(ctx, e)
        reasons = [e.message, *web.decide(ctx, tier).reasons] if with_reasons else [e.message]
        return refuse(web, ctx, user, enc, reasons, status=status_of(e))
    return stepped_up(web, ctx, user, enc, result)


def _stepping_up(web: Web, post: Post, name: str) -> tuple[Ctx, User, EnclaveRecord]:
    """A step-up form post: its signed-in session (CSRF checked), user and enclave."""
    ctx = web.posted(post)
    user = web.require_auth(ctx)
    return ctx, user, enclave_for(web, user, name)


@router.post("/enclaves/{name}/totp", response_class=HTMLResponse)
def stepup_totp(web: WebDep, post: PostedForm, name: str, code: CodeField) -> Response:
    ctx, user, enc = _stepping_up(web, post, name)
    check = totp_check(web, ctx, user, code, enclave=enc.name)
    return present_factor(web, ctx, user, enc, check, with_reasons=False)


@router.post("/enclaves/{name}/webauthn/options")
def stepup_webauthn_options(web: WebDep, post: ScriptPost, name: str) -> Response:
    ctx = web.options_ctx(post)
    user = web.require_auth(ctx)
    enc = enclave_for(web, user, name)
    return web.authentication_options(ctx, user, tier=web.portal.tier(enc.tier))


@router.post("/enclaves/{name}/webauthn", response_class=HTMLResponse)
def stepup_webauthn(
    web: WebDep, post: PostedForm, name: str, credential: CredentialField
) -> Response:
    ctx, user, enc = _stepping_up(web, post, name)
    check = webauthn_check(web, ctx, user, credential, enclave=enc.name)
    return present_factor(web, ctx, user, enc, check, with_reasons=True)
