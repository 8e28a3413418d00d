"""Routes of the officer UI. Every GET that shows records appends an ``audit.read``."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import math
import secrets
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from .._actions import action_spec
from .._events import visible_text
from ..service._app import (
    Filters,
    checkpoint_history,
    client_ip,
    event_detail,
    inclusion_proof,
    query_page,
    session_cookie_name,
)
from ..service._errors import ServiceError
from ..service._officer import Session
from ..service._oidc import OidcError
from ..service._state import ServiceState
from ..service._verify_jobs import start_verify
from ._charts import stacked_bars
from ._i18n import LABELS, LANGS, pick_lang

__all__ = ["ui_router"]

_HERE = Path(__file__).parent
_log = logging.getLogger("audit.ui")
_LANG_COOKIE = "enclave_audit_lang"
_OVERVIEW_DAYS = 14
UNKNOWN_OFFICER = "officer:unknown"  # actor of a refused portal sign-in that named no one
_OVERVIEW_CAP = 50_000  # events read per chart at most; the page says when it is capped


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


SessionDep = Annotated[Session, Depends(_session)]


def _login_cookie(st: ServiceState) -> str:
    return "__Host-enclave_audit_login" if st.settings.secure_cookies else "enclave_audit_login"


def _lang(request: Request) -> str:
    return pick_lang(
        cookie=request.cookies.get(_LANG_COOKIE),
        accept_language=request.headers.get("accept-language"),
    )


def _ip(request: Request) -> str | None:
    return client_ip(request)


def _shown(value: Any) -> Any:
    """Jinja's finalize: text with invisible characters escaped (markup we made as is)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible_text(value)
    return value


def _entitled(event: Mapping[str, Any]) -> bool:
    """Whether the event's source may send its action (audit._actions); entries stored
    before intake checked this may claim another component's action."""
    spec = action_spec(str(event.get("action")))
    return spec is not None and spec.allows(str(event.get("source")))


def ui_router(app: FastAPI) -> None:
    """Mount the officer UI on ``app`` under ``/ui``."""
    templates = Jinja2Templates(directory=str(_HERE / "templates"))
    templates.env.autoescape = True
    # Stored text may predate intake's refusal of invisible and bidirectional characters
    # (U+202E, U+2028, zero-width, controls): every value shown is escaped visibly.
    templates.env.finalize = _shown
    templates.env.globals["entitled"] = _entitled
    app.mount("/ui/static", StaticFiles(directory=str(_HERE / "static")), name="ui-static")

    def render(
        request: Request,
        name: str,
        ctx: dict[str, Any],
        *,
        session: Session | None,
        status: int = 200,
    ) -> HTMLResponse:
        lang = _lang(request)
        other = "ja" if lang == "en" else "en"
        full = {
            "t": LABELS[lang],
            "lang": lang,
            "other_lang": other,
            "here": request.url.path,
            "csrf": session.csrf if session else "",
            "officer": session.officer.id if session else None,
            **ctx,
        }
        resp = templates.TemplateResponse(request, name, full, status_code=status)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def check_csrf(session: Session, presented: str | None) -> None:
        st_officers = app.state.audit.officers
        if not st_officers.csrf_ok(session, presented):
            raise CsrfFailed

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.endswith(".json"):
            return JSONResponse({"error": "an officer login is required"}, status_code=401)
        return RedirectResponse("/ui/login", status_code=303)

    @app.exception_handler(CsrfFailed)
    async def _csrf(request: Request, exc: CsrfFailed) -> Response:
        return JSONResponse(
            {"error": "the form's CSRF token is missing or wrong; reload the page"},
            status_code=403,
        )

    # -- login ------------------------------------------------------------------------
    @app.get("/ui", include_in_schema=False)
    async def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=303)

    @app.get("/ui/login", include_in_schema=False, response_class=HTMLResponse)
    async def login_form(request: Request) -> HTMLResponse:
        return _login_page(request, _state(request), error=None, status=200)

    @app.post("/ui/login", include_in_schema=False, response_class=HTMLResponse)
    async def login(
        request: Request,
        token: Annotated[str, Form()] = "",
        login_csrf: Annotated[str, Form()] = "",
    ) -> Response:
        st = _state(request)
        expected = request.cookies.get(_login_cookie(st)) or ""
        if not expected or not secrets.compare_digest(expected, login_csrf):
            return JSONResponse(
                {"error": "the login form expired or came from another site; reload it"},
                status_code=403,
            )
        ip = _ip(request)
        locked = st.officers.locked_for(ip)
        if locked > 0:
            st.note_rejection("officer_login_locked", ip)  # summarised, not one by one
            return _login_page(
                request,
                st,
                error=LABELS[_lang(request)]["login_locked"].format(seconds=math.ceil(locked)),
                status=429,
            )
        result = st.officers.login(token.strip())
        if result is None:
            await _record_failure(
                st,
                request,
                outcome="failure",
                details={
                    "factor": "password",
                    "reason": "the bootstrap officer token did not match",
                },
            )
            return _login_page(
                request, st, error=LABELS[_lang(request)]["login_failed"], status=401
            )
        cookie, _sess = result
        try:
            await _record_auth(
                st,
                request,
                action="auth.factor.verified",
                outcome="success",
                details={"factor": "password", "category": "knowledge"},
            )
        except BaseException:
            st.officers.logout(cookie)  # fail closed: no record, no session
            raise
        done = RedirectResponse("/ui/", status_code=303)
        done.set_cookie(
            session_cookie_name(st.settings),
            cookie,
            httponly=True,
            secure=st.settings.secure_cookies,
            samesite="strict",
            path="/",
        )
        done.delete_cookie(_login_cookie(st), path="/")
        return done

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

    # -- sign-in through the portal (OpenID Connect; see service/_oidc.py) ------------------
    def _oidc_cookie(st: ServiceState) -> str:
        return "__Host-enclave_audit_oidc" if st.settings.secure_cookies else "enclave_audit_oidc"

    @app.get("/ui/login/oidc", include_in_schema=False)
    async def oidc_begin(request: Request) -> Response:
        st = _state(request)
        if st.oidc is None:
            return _login_page(request, st, error=LABELS[_lang(request)]["oidc_off"], status=404)
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

    @app.get("/ui/oidc/callback", include_in_schema=False, response_class=HTMLResponse)
    async def oidc_callback(
        request: Request,
        state: Annotated[str, Query(max_length=500)] = "",
        code: Annotated[str, Query(max_length=500)] = "",
        error: Annotated[str, Query(max_length=200)] = "",
    ) -> Response:
        st = _state(request)
        if st.oidc is None:
            return _login_page(request, st, error=LABELS[_lang(request)]["oidc_off"], status=404)
        oidc = st.oidc
        # issue #12, item 4: anyone can call this URL, and each refusal appends an event;
        # an address that failed too often is refused unrecorded one by one, summarised
        # as audit.intake.rejected (reason oidc_callback_locked) like refused intake
        ip = _ip(request)
        locked = st.officers.locked_for(ip)
        if locked > 0:
            st.note_rejection("oidc_callback_locked", ip)
            refused = _oidc_refused(
                request,
                st,
                reason=LABELS[_lang(request)]["login_locked"].format(seconds=math.ceil(locked)),
                status=429,
            )
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
            await _record_failure(
                st,
                request,
                outcome="failure",
                details={"factor": "oidc", "reason": e.reason[:256]},
                actor=e.username or UNKNOWN_OFFICER,
            )
            return _oidc_refused(request, st, reason=e.reason, status=401)
        if not decision.allowed or decision.username is None:
            reason = "; ".join(decision.reasons)[:256]
            await _record_failure(
                st,
                request,
                outcome="denied",
                details={"factor": "oidc", "reason": reason},
                actor=decision.username or UNKNOWN_OFFICER,
            )
            return _oidc_refused(request, st, reason=reason, status=403)
        cookie, _sess = st.officers.start_session(officer_id=decision.username)
        try:
            await _record_auth(
                st,
                request,
                action="auth.factor.verified",
                outcome="success",
                details={"factor": "oidc", "aal": decision.aal},
                actor=decision.username,
            )
        except BaseException:
            st.officers.logout(cookie)  # fail closed: no record, no session
            raise
        # A page, not a redirect: the chain began at the portal (cross-site), and a
        # browser would not send the SameSite=Strict session cookie along a redirect.
        done = render(
            request,
            "signed_in.html",
            {"who": decision.username},
            session=None,
        )
        done.set_cookie(
            session_cookie_name(st.settings),
            cookie,
            httponly=True,
            secure=st.settings.secure_cookies,
            samesite="strict",
            path="/",
        )
        done.delete_cookie(_oidc_cookie(st), path="/")
        return done

    def _oidc_refused(request: Request, st: ServiceState, *, reason: str, status: int) -> Response:
        resp = render(request, "refused.html", {"reason": reason}, session=None, status=status)
        resp.delete_cookie(_oidc_cookie(st), path="/")
        return resp

    @app.post("/ui/logout", include_in_schema=False)
    async def logout(
        request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        check_csrf(session, csrf)
        st = _state(request)
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

    @app.get("/ui/lang/{lang}", include_in_schema=False)
    async def set_lang(request: Request, lang: str, next: str = "/ui/") -> Response:
        target = next if next.startswith("/ui/") and "//" not in next else "/ui/"
        resp = RedirectResponse(target, status_code=303)
        if lang in LANGS:
            st = _state(request)
            resp.set_cookie(
                _LANG_COOKIE,
                lang,
                secure=st.settings.secure_cookies,
                httponly=True,
                samesite="lax",
                path="/",
                max_age=365 * 86400,
            )
        return resp

    # -- overview -----------------------------------------------------------------------
    @app.get("/ui/", include_in_schema=False, response_class=HTMLResponse)
    async def overview(request: Request, session: SessionDep) -> HTMLResponse:
        st = _state(request)
        t = LABELS[_lang(request)]
        today = dt.datetime.now(dt.UTC).date()
        days = [
            (today - dt.timedelta(days=_OVERVIEW_DAYS - 1 - i)).isoformat()
            for i in range(_OVERVIEW_DAYS)
        ]
        since = days[0] + "T00:00:00Z"
        capped = False

        async def per_day(action: str, *, by_enclave: bool) -> dict[str, list[int]]:
            nonlocal capped
            counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
            pos = {d: i for i, d in enumerate(days)}
            cursor: str | None = None
            seen = 0
            while True:
                rows, cursor = await query_page(
                    st, Filters(action=action, since=since), cursor=cursor, limit=1000
                )
                for e in rows:
                    day = str(e.get("received") or e.get("time"))[:10]
                    if day in pos and _entitled(e):  # a forged source counts for nothing
                        key = (e.get("enclave") or "-") if by_enclave else action
                        counts[key][pos[day]] += 1
                seen += len(rows)
                if cursor is None:
                    break
                if seen >= _OVERVIEW_CAP:
                    capped = True
                    break
            if not counts:
                counts[action] = [0] * len(days)
            return dict(counts)

        charts = [
            stacked_bars(
                days=days,
                series=await per_day("session.started", by_enclave=True),
                title=t["entries_per_day"],
            ),
            stacked_bars(
                days=days,
                series=await per_day("auth.factor.failed", by_enclave=False),
                title=t["failed_factors"],
            ),
            stacked_bars(
                days=days,
                series=await per_day("auth.lockout", by_enclave=False),
                title=t["lockouts"],
            ),
        ]
        exports: dict[str, list[int]] = {}
        for action in ("export.approved", "export.downloaded", "export.rejected"):
            exports.update(await per_day(action, by_enclave=False))
        charts.append(stacked_bars(days=days, series=exports, title=t["exports"]))
        size = await st.call(st.log.size)
        await st.record_read(
            session.officer,
            view="overview",
            query={"since": since},
            client_ip=_ip(request),
        )
        return render(
            request,
            "overview.html",
            {
                "charts": zip(
                    (t["entries_per_day"], t["failed_factors"], t["lockouts"], t["exports"]),
                    charts,
                    strict=True,
                ),
                "size": size,
                "capped": capped,
            },
            session=session,
        )

    # -- search and timeline ---------------------------------------------------------------
    @app.get("/ui/search", include_in_schema=False, response_class=HTMLResponse)
    async def search(
        request: Request,
        session: SessionDep,
        actor: str = "",
        enclave: str = "",
        action: str = "",
        outcome: str = "",
        source: str = "",
        since: str = "",
        until: str = "",
        order: str = "desc",
        cursor: str = "",
    ) -> HTMLResponse:
        st = _state(request)
        filters = Filters(
            order="asc" if order == "asc" else "desc",
            actor=actor or None,
            enclave=enclave or None,
            action=action or None,
            outcome=outcome or None,
            source=source or None,
            since=_form_time(since),
            until=_form_time(until),
        )
        error = None
        events: list[dict[str, Any]] = []
        nxt = None
        try:
            events, nxt = await query_page(st, filters, cursor=cursor or None, limit=50)
        except ServiceError as e:
            error = e.message
        await st.record_read(
            session.officer,
            view="search",
            query=filters.target() | ({"cursor": cursor} if cursor else {}),
            results=len(events),
            client_ip=_ip(request),
        )
        params = filters.target()
        form = {
            "actor": actor,
            "enclave": enclave,
            "action": action,
            "outcome": outcome,
            "source": source,
            "since": since,
            "until": until,
            "order": filters.order,
        }
        next_url = (
            "/ui/search?" + urlencode({**{k: v for k, v in form.items() if v}, "cursor": nxt})
            if nxt
            else None
        )
        return render(
            request,
            "search.html",
            {
                "events": events,
                "form": form,
                "error": error,
                "next_url": next_url,
                "export_query": urlencode(params),
            },
            session=session,
            status=400 if error else 200,
        )

    @app.get("/ui/actors/{actor:path}", include_in_schema=False, response_class=HTMLResponse)
    async def timeline(
        request: Request, session: SessionDep, actor: str, cursor: str = ""
    ) -> HTMLResponse:
        st = _state(request)
        events, nxt = await query_page(st, Filters(actor=actor), cursor=cursor or None, limit=200)
        await st.record_read(
            session.officer,
            view="timeline",
            query={"actor": actor} | ({"cursor": cursor} if cursor else {}),
            results=len(events),
            client_ip=_ip(request),
        )
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in events:
            by_day[str(e.get("received") or e.get("time"))[:10]].append(e)
        return render(
            request,
            "timeline.html",
            {
                "actor": actor,
                "days": sorted(by_day.items()),
                "next_url": (f"/ui/actors/{quote(actor)}?" + urlencode({"cursor": nxt}))
                if nxt
                else None,
            },
            session=session,
        )

    # -- one event with its proof ---------------------------------------------------------
    @app.get("/ui/events/{index}", include_in_schema=False, response_class=HTMLResponse)
    async def event_page(request: Request, session: SessionDep, index: int) -> HTMLResponse:
        st = _state(request)
        detail = await event_detail(st, index)
        cp = await st.call(st.log.latest_checkpoint)
        if cp is None or index >= int(cp.size):
            cp = await asyncio.to_thread(st.publish_now, trigger="demand")
        proof = await inclusion_proof(st, index=index, size=int(cp.size))
        server_ok, server_msg = _server_check(proof, cp)
        vkey = await st.call(st.log.verifier_key)
        await st.record_read(
            session.officer, view="event", query={"index": index}, client_ip=_ip(request)
        )
        return render(
            request,
            "event.html",
            {
                "index": index,
                "event": detail.get("event") or {},
                "entry_b64": detail["entry"],
                "entry_text": base64.b64decode(detail["entry"]).decode("utf-8", "replace"),
                "proof": proof,
                "checkpoint": cp,
                "root_b64": base64.b64encode(cp.root_hash).decode("ascii"),
                "vkey": vkey,
                "server_ok": server_ok,
                "server_msg": server_msg,
            },
            session=session,
        )

    # -- checkpoints ----------------------------------------------------------------------------
    @app.get("/ui/checkpoints", include_in_schema=False, response_class=HTMLResponse)
    async def checkpoints(request: Request, session: SessionDep) -> HTMLResponse:
        st = _state(request)
        cps = await checkpoint_history(st)
        vkey = await st.call(st.log.verifier_key)
        await st.record_read(
            session.officer,
            view="checkpoints",
            query={},
            results=len(cps),
            client_ip=_ip(request),
        )
        return render(
            request,
            "checkpoints.html",
            {"checkpoints": list(reversed(cps)), "vkey": vkey},
            session=session,
        )

    @app.post("/ui/checkpoints", include_in_schema=False)
    async def publish(
        request: Request, session: SessionDep, csrf: Annotated[str, Form()] = ""
    ) -> Response:
        check_csrf(session, csrf)
        st = _state(request)
        cp = await asyncio.to_thread(st.publish_now, trigger="demand")
        await st.record_published(cp, officer=session.officer, client_ip=_ip(request))
        return RedirectResponse("/ui/checkpoints", status_code=303)

    # -- verify the whole log ---------------------------------------------------------------------
    @app.get("/ui/verify", include_in_schema=False, response_class=HTMLResponse)
    async def verify_page(request: Request, session: SessionDep) -> HTMLResponse:
        return render(request, "verify.html", {}, session=session)

    @app.post("/ui/verify", include_in_schema=False)
    async def verify_start(request: Request, session: SessionDep) -> Response:
        presented = request.headers.get("x-csrf-token")
        if presented is None:
            form = await request.form()
            value = form.get("csrf")
            presented = value if isinstance(value, str) else None
        check_csrf(session, presented)
        st = _state(request)
        try:
            job = await start_verify(st, officer_id=session.officer.id, client_ip=_ip(request))
        except ServiceError as e:  # answered by the service's one error handler
            st.note_rejection(e.reason, _ip(request))
            raise
        if request.headers.get("x-csrf-token") is not None:
            return JSONResponse({"job": job.id, "total": job.total})
        return RedirectResponse(f"/ui/verify?job={job.id}", status_code=303)

    @app.get("/ui/verify/{job_id}.json", include_in_schema=False)
    async def verify_status(request: Request, session: SessionDep, job_id: str) -> Response:
        st = _state(request)
        job = st.verify_jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "no such verification"}, status_code=404)
        return JSONResponse(
            {
                "job": job.id,
                "total": job.total,
                "done": job.done,
                "finished": job.finished is not None,
                "ok": job.ok,
                "message": job.message,
            },
            headers={"Cache-Control": "no-store"},
        )


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
    locks = st.officers.note_failure(_ip(request))
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
    from .._events import Event
    from ..service._officer import BOOTSTRAP_OFFICER

    event = Event.new(
        source="audit",
        actor=actor or BOOTSTRAP_OFFICER,
        action=action,
        outcome=outcome,
        client_ip=_ip(request),
        details=details,
    )
    await st.append([event], client="(ui)")  # sign-ins and officer actions: their own share


def _form_time(value: str) -> str | None:
    """``<input type=datetime-local>`` gives ``YYYY-MM-DDTHH:MM``: read it as UTC."""
    v = value.strip()
    if not v:
        return None
    if len(v) == 16 and v[10] == "T":
        return v + ":00Z"
    return v


def _server_check(proof: Any, cp: Any) -> tuple[bool, str]:
    """Steps of RFC 9162 2.1.3.2 on the server, and the checkpoint's signature."""
    from .._merkle import verify_inclusion
    from ..errors import AuditError

    try:
        verify_inclusion(
            leaf_hash=base64.b64decode(proof.leaf_hash),
            index=proof.index,
            size=proof.size,
            proof=[base64.b64decode(h) for h in proof.hashes],
            root=cp.root_hash,
        )
    except AuditError as e:
        return False, str(e)
    return True, "RFC 9162 inclusion proof verified against the signed checkpoint root"
