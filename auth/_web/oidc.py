"""The OpenID Connect provider's endpoints, thin over ``auth._provider``."""

from __future__ import annotations

import urllib.parse
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Form, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from .._app import Ctx, Web, WebDep, actor_of
from .._errors import (
    InvalidInputError,
)
from .._forms import PostedForm
from .._i18n import translate
from .._policy import LoginDecision, Tier, acr_for_aal
from .._provider import (
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
)
from .._provider import userinfo as provider_userinfo
from .._session import Stage
from .._store import User
from ._models import (
    Discovery,
    OAuthError,
    TokenResponse,
)

__all__ = ["router"]

router = APIRouter()

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


@router.get("/.well-known/openid-configuration", response_model=Discovery)
def discovery(
    web: WebDep,
) -> Discovery:
    return Discovery(
        issuer=web.issuer,
        authorization_endpoint=f"{web.issuer}/oidc/authorize",
        token_endpoint=f"{web.issuer}/oidc/token",
        userinfo_endpoint=f"{web.issuer}/oidc/userinfo",
        jwks_uri=f"{web.issuer}/oidc/jwks",
        end_session_endpoint=f"{web.issuer}/oidc/logout",
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


@router.get("/oidc/jwks")
def jwks(
    web: WebDep,
) -> dict[str, Any]:
    return web.portal.keys.jwks()


def auth_error_redirect(redirect_uri: str, error: str, desc: str, state: str | None) -> Response:
    q = {"error": error, "error_description": desc}
    if state:
        q["state"] = state
    sep = "&" if "?" in redirect_uri else "?"
    return RedirectResponse(redirect_uri + sep + urllib.parse.urlencode(q), status_code=303)


@router.get("/oidc/authorize", response_class=HTMLResponse)
def authorize(
    web: WebDep,
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
            portal=web.portal,
            client_id=client_id,
            redirect_uri=redirect_uri,
            response_type=response_type,
            scope=scope,
            state=state,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
            client_ip=web.client_ip(request),
        )
    except AuthorizationRefusedError as e:
        return auth_error_redirect(redirect_uri, e.error, e.message, state)
    ctx = web.session_ctx(request)
    # 3. The session must have passed the portal login (both factors).
    if ctx.stage is not Stage.AUTHENTICATED:
        if prompt == "none":
            return auth_error_redirect(redirect_uri, "login_required", "Sign-in needed.", state)
        stage = ctx.stage
        if stage is not Stage.PASSWORD:
            ctx.state.clear()
        ctx.state["authorize"] = req.params()
        web.save(ctx)
        return web.redirect(ctx, "/login/factor" if stage is Stage.PASSWORD else "/login")
    user = web.require_auth(ctx)
    # 4. The tier the client demands: a hub its enclave's (with membership and
    # network), any other client (the audit UI) the tier it was registered with.
    if req.client.enclave is None:
        tier = web.portal.client_tier(req.client)
        decision = web.decide(ctx, tier)
        refused = client_tier_refusal(web, ctx, user, req, tier, decision, prompt)
        enclave = None
    else:
        decision_or_refusal = hub_entry(web, ctx, user, req)
        if isinstance(decision_or_refusal, Response):
            return decision_or_refusal
        decision, refused, enclave = decision_or_refusal, None, req.client.enclave
    if refused is not None:
        return refused
    # 5. A one-time code bound to this request and this sign-in's decision.
    ctx.state.pop("authorize", None)
    web.save(ctx)
    code = issue_code(
        portal=web.portal,
        grant=CodeGrant.for_decision(
            request=req,
            user=user,
            decision=decision,
            enclave=enclave,
            session_hash=ctx.session.id_hash,
            auth_time=int(ctx.session.auth_time or web.portal.clock()),
        ),
        client_ip=ctx.client_ip,
        actor=user.username,
    )
    sep = "&" if "?" in redirect_uri else "?"
    return web.redirect(
        ctx, redirect_uri + sep + urllib.parse.urlencode({"code": code, "state": state})
    )


def client_tier_refusal(
    web: Web,
    ctx: Ctx,
    user: User,
    req: AuthorizationRequest,
    tier: Tier,
    decision: LoginDecision,
    prompt: str,
) -> Response | None:
    """A client that is not a hub, and a sign-in below its tier: step up or refuse."""
    kinds = frozenset(c.kind for c in web.store.list_credentials(user_id=user.id) if not c.disabled)
    step = client_step_up(decision=decision, enrolled_kinds=kinds, prompt=prompt)
    if step is StepUp.NOT_NEEDED:
        return None
    web.audit(
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
    web.save(ctx)
    return web.redirect(ctx, "/login/factor")


def hub_entry(
    web: Web, ctx: Ctx, user: User, req: AuthorizationRequest
) -> LoginDecision | Response:
    """An enclave's hub: membership, then the enclave's entry check (a step-up at
    ``/enclaves/{name}`` when it fails); the decision when the user may enter."""
    enc = web.store.get_enclave(name=str(req.client.enclave))
    if enc is None or user.username not in {u for u, _ in enc.members}:
        web.audit(
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
    _tier, decision, blockers = web.entry_check(ctx, user, enc)
    if blockers or not decision.allowed:
        ctx.state["authorize"] = {**req.params(), "_enclave": enc.name}
        web.save(ctx)
        web.audit(
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
        return web.redirect(ctx, f"/enclaves/{enc.name}")
    return decision


def oauth_error(error: str, desc: str, status: int = 400) -> JSONResponse:
    headers = {"WWW-Authenticate": "Basic"} if status == 401 else {}
    return JSONResponse(
        {"error": error, "error_description": desc}, status_code=status, headers=headers
    )


@router.post(
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
async def token_endpoint(web: WebDep, request: Request) -> Response:
    # The hottest endpoint parses its small form itself (RFC 6749 section 3.2:
    # urlencoded, each parameter at most once) instead of FastAPI's generic path.
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return oauth_error("invalid_request", "The body must be application/x-www-form-urlencoded.")
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
        return oauth_error("invalid_request", "The form body is not valid UTF-8 urlencoded data.")
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
    return await run_in_threadpool(token, web, web.client_ip(request), form, auth_header)


def token(web: Web, ip: str | None, form: dict[str, str], authorization: str | None) -> Response:
    try:
        client = authenticate_client(
            portal=web.portal,
            client_id=form.get("client_id", ""),
            client_secret=form.get("client_secret", ""),
            authorization=authorization,
            client_ip=ip,
        )
        grant = redeem_code(
            portal=web.portal,
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


@router.get("/oidc/userinfo")
def userinfo(
    web: WebDep, authorization: Annotated[str | None, Header(max_length=1000)] = None
) -> Response:
    try:
        info = provider_userinfo(portal=web.portal, authorization=authorization)
    except BearerRefusedError as e:
        challenge = "Bearer" if not e.error else f'Bearer error="{e.error}"'
        return JSONResponse(
            {"detail": e.message}, status_code=401, headers={"WWW-Authenticate": challenge}
        )
    return JSONResponse(asdict(info))


@router.get("/oidc/logout", response_class=HTMLResponse)
def end_session_endpoint(
    web: WebDep,
    request: Request,
    id_token_hint: Annotated[str, Query(max_length=16384)] = "",
    post_logout_redirect_uri: Annotated[str, Query(max_length=2000)] = "",
    state: Annotated[str, Query(max_length=500)] = "",
    client_id: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    ctx = web.session_ctx(request)
    hint_ok = False
    if id_token_hint:
        try:
            claims = web.portal.keys.verify(id_token_hint)
        except InvalidInputError:
            claims = {}
        hint_ok = bool(claims) and claims.get("sid") == ctx.session.id_hash[:32]
        aud = claims.get("aud", "")
        auds = [str(a) for a in aud] if isinstance(aud, list) else [str(aud)]
        if claims and client_id and client_id not in auds:
            # RP-Initiated Logout 1.0 §2: both given, they must name the same client.
            web.audit(
                action="web.request.rejected",
                actor=actor_of(ctx.session),
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
    client = web.store.get_client(client_id=client_id) if client_id else None
    target = None
    if post_logout_redirect_uri:
        if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise InvalidInputError("post_logout_redirect_uri is not registered for this client.")
        target = post_logout_redirect_uri
    if not hint_ok:
        # Without proof that this session's client asked, confirm (CSRF-safe).
        return web.render(
            ctx,
            "logout.html",
            heading=translate("sign_out", ctx.lang),
            redirect=target,
            state=state,
            client_id=client_id,
        )
    web.end_session(ctx, everywhere=False, reason="RP-initiated logout")
    return logged_out(web, request, target, state)


def logged_out(web: Web, request: Request, target: str | None, state: str) -> Response:
    if target:
        sep = "&" if "?" in target else "?"
        return RedirectResponse(
            target + (sep + urllib.parse.urlencode({"state": state}) if state else ""),
            status_code=303,
        )
    return web.signed_out(request)


@router.post("/oidc/logout", response_class=HTMLResponse)
def end_session_confirm(
    web: WebDep,
    post: PostedForm,
    post_logout_redirect_uri: Annotated[str, Form(max_length=2000)] = "",
    state: Annotated[str, Form(max_length=500)] = "",
    client_id: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    ctx = web.posted(post)
    target = None
    if post_logout_redirect_uri:
        client = web.store.get_client(client_id=client_id) if client_id else None
        if client is None or post_logout_redirect_uri not in client.post_logout_redirect_uris:
            raise InvalidInputError("post_logout_redirect_uri is not registered for this client.")
        target = post_logout_redirect_uri
    web.end_session(ctx, everywhere=False, reason="RP-initiated logout")
    return logged_out(web, post.request, target, state)
