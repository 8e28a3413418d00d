"""Officer sign-in and sign-out: the bootstrap token form and the portal (OpenID
Connect, see ``service/_oidc.py``). Every decision is recorded before it is answered."""

from __future__ import annotations

import asyncio
import math
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .._events import Event
from ..service._officer import BOOTSTRAP_OFFICER
from ..service._oidc import OidcError
from ..service._state import ServiceState
from ..service._web import session_cookie_name
from ._base import (
    LANG_COOKIE,
    SessionDep,
    StateDep,
    check_csrf,
    ip,
    lang,
    render,
    set_session_cookie,
)
from ._i18n import LABELS, LANGS

__all__ = ["UNKNOWN_OFFICER", "router"]

UNKNOWN_OFFICER = "officer:unknown"  # actor of a refused portal sign-in that named no one

router = APIRouter(include_in_schema=False)


def _login_cookie(st: ServiceState) -> str:
    return "__Host-enclave_audit_login" if st.settings.secure_cookies else "enclave_audit_login"


def _oidc_cookie(st: ServiceState) -> str:
    return "__Host-enclave_audit_oidc" if st.settings.secure_cookies else "enclave_audit_oidc"


def _login_page(
    request: Request, st: ServiceState, *, error: str | None, status: int
) -> HTMLResponse:
    """The login form with a fresh login-CSRF token in its cookie (and ``error``)."""
    fresh = secrets.token_urlsafe(32)
    resp = render(
        request,
        "login.html",
        {"login_csrf": fresh, "error": error, "oidc": st.oidc is not None},
        session=None,
        status=status,
    )
    resp.set_cookie(
        _login_cookie(st),
        fresh,
        httponly=True,
        secure=st.settings.secure_cookies,
        samesite="strict",
        path="/",
        max_age=600,
    )
    return resp


def _locked_message(request: Request, locked: float) -> str:
    return LABELS[lang(request)]["login_locked"].format(seconds=math.ceil(locked))


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=303)


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(request: Request, st: StateDep) -> HTMLResponse:
    return _login_page(request, st, error=None, status=200)


@router.post("/ui/login", response_class=HTMLResponse)
async def login(
    request: Request,
    st: StateDep,
    token: Annotated[str, Form()] = "",
    login_csrf: Annotated[str, Form()] = "",
) -> Response:
    expected = request.cookies.get(_login_cookie(st)) or ""
    if not expected or not secrets.compare_digest(expected, login_csrf):
        return JSONResponse(
            {"error": "the login form expired or came from another site; reload it"},
            status_code=403,
        )
    locked = st.officers.locked_for(ip(request))
    if locked > 0:
        st.note_rejection("officer_login_locked", ip(request))  # summarised, not one by one
        return _login_page(request, st, error=_locked_message(request, locked), status=429)
    result = st.officers.login(token.strip())
    if result is None:
        await _record_failure(
            st,
            request,
            outcome="failure",
            details={"factor": "password", "reason": "the bootstrap officer token did not match"},
        )
        return _login_page(request, st, error=LABELS[lang(request)]["login_failed"], status=401)
    cookie, _sess = result
    await _record_sign_in(
        st, request, cookie, details={"factor": "password", "category": "knowledge"}
    )
    done = RedirectResponse("/ui/", status_code=303)
    set_session_cookie(done, st, cookie)
    done.delete_cookie(_login_cookie(st), path="/")
    return done


@router.get("/ui/login/oidc")
async def oidc_begin(request: Request, st: StateDep) -> Response:
    if st.oidc is None:
        return _login_page(request, st, error=LABELS[lang(request)]["oidc_off"], status=404)
    try:
        cookie, url = await asyncio.to_thread(st.oidc.begin)
    except OidcError as e:
        return _oidc_refused(request, st, reason=e.reason, status=502)
    resp = RedirectResponse(url, status_code=303)
    resp.set_cookie(
        _oidc_cookie(st),
        cookie,
        httponly=True,
        secure=st.settings.secure_cookies,
        samesite="lax",  # the redirect back from the portal is a top-level GET
        path="/",
        max_age=int(st.oidc.config.pending_ttl),
    )
    return resp


@router.get("/ui/oidc/callback", response_class=HTMLResponse)
async def oidc_callback(
    request: Request,
    st: StateDep,
    state: Annotated[str, Query(max_length=500)] = "",
    code: Annotated[str, Query(max_length=500)] = "",
    error: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    oidc = st.oidc
    if oidc is None:
        return _login_page(request, st, error=LABELS[lang(request)]["oidc_off"], status=404)
    # issue #12, item 4: anyone can call this URL, and each refusal appends an event;
    # an address that failed too often is refused unrecorded one by one, summarised
    # as audit.intake.rejected (reason oidc_callback_locked) like refused intake
    locked = st.officers.locked_for(ip(request))
    if locked > 0:
        st.note_rejection("oidc_callback_locked", ip(request))
        refused = _oidc_refused(request, st, reason=_locked_message(request, locked), status=429)
        refused.headers["Retry-After"] = str(math.ceil(locked))
        return refused
    try:
        decision, _claims = await asyncio.to_thread(
            oidc.finish,
            cookie=request.cookies.get(_oidc_cookie(st)),
            state=state,
            code=code,
            error=error,
        )
    except OidcError as e:
        return await _oidc_failed(
            request, st, outcome="failure", reason=e.reason[:256], actor=e.username, status=401
        )
    if not decision.allowed or decision.username is None:
        reason = "; ".join(decision.reasons)[:256]
        return await _oidc_failed(
            request, st, outcome="denied", reason=reason, actor=decision.username, status=403
        )
    cookie, _sess = st.officers.start_session(officer_id=decision.username)
    await _record_sign_in(
        st,
        request,
        cookie,
        details={"factor": "oidc", "aal": decision.aal},
        actor=decision.username,
    )
    # A page, not a redirect: the chain began at the portal (cross-site), and a
    # browser would not send the SameSite=Strict session cookie along a redirect.
    done = render(request, "signed_in.html", {"who": decision.username}, session=None)
    set_session_cookie(done, st, cookie)
    done.delete_cookie(_oidc_cookie(st), path="/")
    return done


async def _oidc_failed(
    request: Request,
    st: ServiceState,
    *,
    outcome: str,
    reason: str,
    actor: str | None,
    status: int,
) -> Response:
    """A refused portal sign-in: recorded (and counted), then the refusal page."""
    await _record_failure(
        st,
        request,
        outcome=outcome,
        details={"factor": "oidc", "reason": reason},
        actor=actor or UNKNOWN_OFFICER,
    )
    return _oidc_refused(request, st, reason=reason, status=status)


def _oidc_refused(request: Request, st: ServiceState, *, reason: str, status: int) -> Response:
    resp = render(request, "refused.html", {"reason": reason}, session=None, status=status)
    resp.delete_cookie(_oidc_cookie(st), path="/")
    return resp


@router.post("/ui/logout")
async def logout(
    request: Request, st: StateDep, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(st, session, csrf)
    name = session_cookie_name(st.settings)
    st.officers.logout(request.cookies.get(name))
    await _record_auth(
        st,
        request,
        action="auth.logout",
        outcome="success",
        details={},
        actor=session.officer.id,
    )
    resp = RedirectResponse("/ui/login", status_code=303)
    resp.delete_cookie(name, path="/", secure=st.settings.secure_cookies, httponly=True)
    return resp


@router.get("/ui/lang/{lang}")
async def set_lang(st: StateDep, lang: str, next: str = "/ui/") -> Response:
    target = next if next.startswith("/ui/") and "//" not in next else "/ui/"
    resp = RedirectResponse(target, status_code=303)
    if lang in LANGS:
        resp.set_cookie(
            LANG_COOKIE,
            lang,
            secure=st.settings.secure_cookies,
            httponly=True,
            samesite="lax",
            path="/",
            max_age=365 * 86400,
        )
    return resp


async def _record_sign_in(
    st: ServiceState,
    request: Request,
    cookie: str,
    *,
    details: dict[str, Any],
    actor: str | None = None,
) -> None:
    """Record a successful sign-in; the new session ends if it cannot be recorded."""
    try:
        await _record_auth(
            st,
            request,
            action="auth.factor.verified",
            outcome="success",
            details=details,
            actor=actor,
        )
    except BaseException:
        st.officers.logout(cookie)  # fail closed: no record, no session
        raise


async def _record_failure(
    st: ServiceState,
    request: Request,
    *,
    outcome: str,
    details: dict[str, Any],
    actor: str | None = None,
) -> None:
    """A refused officer sign-in: counted towards its address's lock first (so that a
    failure to record cannot make guessing free), then recorded, with the lockout it
    caused."""
    locks = st.officers.note_failure(ip(request))
    await _record_auth(
        st, request, action="auth.factor.failed", outcome=outcome, details=details, actor=actor
    )
    if locks:
        await _record_auth(
            st,
            request,
            action="auth.lockout",
            outcome="denied",
            details={
                "failures": st.settings.max_login_failures,
                "reason": "officer login locked for this address after repeated failures",
            },
            actor=actor,
        )


async def _record_auth(
    st: ServiceState,
    request: Request,
    *,
    action: str,
    outcome: str,
    details: dict[str, Any],
    actor: str | None = None,
) -> None:
    """Record an officer login decision before answering (fails closed with 503).

    The bootstrap token is a shared secret typed like a password: factor
    ``password``, category ``knowledge``, actor ``officer:bootstrap``. A sign-in
    through the portal is factor ``oidc`` with the portal username as actor (or
    ``officer:unknown`` when the refusal came before a verified token named anyone)."""
    event = Event.new(
        source="audit",
        actor=actor or BOOTSTRAP_OFFICER,
        action=action,
        outcome=outcome,
        client_ip=ip(request),
        details=details,
    )
    await st.append([event], client="(ui)")  # sign-ins and officer actions: their own share
