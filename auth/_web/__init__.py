"""The portal's web layer: one FastAPI router per area, thin over typed ceremonies.

Called by ``auth.create_app`` (the ``serve`` command, tests). Like JupyterHub's
``handlers/`` vs ``apihandlers/``: pages (login, invitation, enrolment, enclaves)
and APIs (oidc, admin) share ``auth._app.Web``; handlers decide nothing about
security themselves (``auth._session``, ``auth._provider``, ``auth._factors`` do).
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from .._app import _HERE, PORTAL_CSP, SECRET_FORM, SecurityHeaders, Web, status_of, web_of
from .._errors import AuditUnavailableError, AuthError, ThrottledError
from .._i18n import translate
from .._portal import Portal
from . import admin, enclaves, enrolment, invitation, login, oidc

__all__ = ["create_app"]

_ERR = {
    400: {"description": "Bad input, one sentence saying what was wrong"},
    401: {"description": "Not authenticated, or a factor failed"},
    403: {"description": "Not allowed (CSRF, membership, tier, network)"},
    404: {"description": "No such thing"},
    409: {"description": "Conflicts with the current state"},
    429: {"description": "Throttled; see Retry-After"},
    503: {"description": "Audit log or store unavailable; see Retry-After"},
}


async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    """Malformed or oversized fields: FastAPI's documented 422 body, and an audit event.

    The event names the first malformed field other than the CSRF token when there is
    one: FastAPI checks the token (a dependency's field, ``auth._forms``) before the
    form's own fields, and the field being pushed (an over-long password) is the news.
    """
    web = web_of(request)
    errors = exc.errors()
    first = next((e for e in errors if tuple(e.get("loc", ())) != ("body", "csrf")), None)
    first = first or (errors[0] if errors else {})
    where = ".".join(str(x) for x in first.get("loc", ()))
    if request.method == "POST" and SECRET_FORM.fullmatch(request.url.path):
        # An over-long password, code or invitation is a guess like any other.
        web.portal.factors.count_address_failure(client_ip=web.client_ip(request))
    web.audit(
        action="web.request.rejected",
        actor="anonymous",
        outcome="failure",
        client_ip=web.client_ip(request),
        details={
            "path": request.url.path[:200],
            "field": where[:100],
            "reason": str(first.get("msg", ""))[:200],
        },
    )
    return await request_validation_exception_handler(request, exc)


async def on_auth_error(request: Request, exc: AuthError) -> Response:
    """Every ``AuthError`` a handler lets through: its status, one sentence, Retry-After."""
    web = web_of(request)
    headers = {}
    if isinstance(exc, ThrottledError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuditUnavailableError):
        headers["Retry-After"] = str(exc.retry_after_s)
    status = status_of(exc)
    if web.wants_json(request):
        return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)
    lang = web.lang_of(request)
    resp = web.render(
        request,
        "message.html",
        status=status,
        heading=translate("error", lang),
        error=exc.message,
        link="/",
        link_text=translate("back", lang),
    )
    resp.headers.update(headers)
    return resp


def create_app(*, portal: Portal) -> FastAPI:
    """The ASGI app for one portal (tests build one per store; ``serve`` one per process)."""
    app = FastAPI(
        title="Enclave portal",
        version="1.0",
        description="Two-category MFA login, enrolment, OIDC provider and admin API.",
        responses=_ERR,  # type: ignore[arg-type]
    )
    app.state.portal = portal
    app.state.web = Web(portal=portal)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    # HSTS on https requests, and on every response when the public URL is https
    # (TLS terminated by a proxy in front; browsers ignore HSTS received over http).
    s = portal.settings
    app.add_middleware(
        SecurityHeaders, csp=PORTAL_CSP, hsts=s.hsts, always=s.issuer.startswith("https://")
    )
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(AuthError, on_auth_error)  # type: ignore[arg-type]
    for area in (login, invitation, enrolment, enclaves, oidc, admin):
        app.include_router(area.router)
    # The token endpoint is the hottest route: match it first (paths do not overlap).
    app.router.routes.sort(key=lambda r: getattr(r, "path", "") != "/oidc/token")
    return app
