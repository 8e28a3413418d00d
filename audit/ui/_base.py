"""What every officer UI handler shares: the service state, the officer session, the
language, rendering a page and checking a form's CSRF token (FastAPI dependencies and
plain functions; no handler state lives in a closure)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from .._actions import action_spec
from .._events import visible_text
from ..service._officer import Session
from ..service._state import ServiceState
from ..service._web import client_ip, session_cookie_name
from ._i18n import LABELS, pick_lang

__all__ = [
    "LANG_COOKIE",
    "CsrfFailed",
    "LoginRequired",
    "SessionDep",
    "StateDep",
    "check_csrf",
    "entitled",
    "ip",
    "lang",
    "render",
    "set_session_cookie",
]

_HERE = Path(__file__).parent
LANG_COOKIE = "enclave_audit_lang"


class LoginRequired(Exception):
    """No live officer session: the page redirects to the login form."""


class CsrfFailed(Exception):
    """A state-changing form arrived without the session's CSRF token."""


def _state(request: Request) -> ServiceState:
    st: ServiceState = request.app.state.audit
    return st


def _session(request: Request) -> Session:
    st = _state(request)
    sess = st.officers.session(request.cookies.get(session_cookie_name(st.settings)))
    if sess is None:
        raise LoginRequired
    return sess


StateDep = Annotated[ServiceState, Depends(_state)]
SessionDep = Annotated[Session, Depends(_session)]


def lang(request: Request) -> str:
    return pick_lang(
        cookie=request.cookies.get(LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )


def ip(request: Request) -> str | None:
    return client_ip(request)


def _shown(value: Any) -> Any:
    """Jinja's finalize: text with invisible characters escaped (markup we made as is)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible_text(value)
    return value


def entitled(event: Mapping[str, Any]) -> bool:
    """Whether the event's source may send its action (audit._actions); entries stored
    before intake checked this may claim another component's action."""
    spec = action_spec(str(event.get("action")))
    return spec is not None and spec.allows(str(event.get("source")))


_templates = Jinja2Templates(directory=str(_HERE / "templates"))
_templates.env.autoescape = True
# Stored text may predate intake's refusal of invisible and bidirectional characters
# (U+202E, U+2028, zero-width, controls): every value shown is escaped visibly.
_templates.env.finalize = _shown
_templates.env.globals["entitled"] = entitled


def render(
    request: Request,
    name: str,
    ctx: dict[str, Any],
    *,
    session: Session | None,
    status: int = 200,
) -> HTMLResponse:
    """The page ``name`` in the request's language, never cached."""
    chosen = lang(request)
    full = {
        "t": LABELS[chosen],
        "lang": chosen,
        "other_lang": "ja" if chosen == "en" else "en",
        "here": request.url.path,
        "csrf": session.csrf if session else "",
        "officer": session.officer.id if session else None,
        **ctx,
    }
    resp = _templates.TemplateResponse(request, name, full, status_code=status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def check_csrf(st: ServiceState, session: Session, presented: str | None) -> None:
    if not st.officers.csrf_ok(session, presented):
        raise CsrfFailed


def set_session_cookie(resp: Response, st: ServiceState, cookie: str) -> None:
    """The officer session cookie: HttpOnly, SameSite=Strict, Secure behind TLS."""
    resp.set_cookie(
        session_cookie_name(st.settings),
        cookie,
        httponly=True,
        secure=st.settings.secure_cookies,
        samesite="strict",
        path="/",
    )
