"""Routes of the officer UI. Every GET that shows records appends an ``audit.read``."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from .._merkle import verify_inclusion
from ..errors import AuditError
from ..service._errors import ServiceError
from ..service._reads import (
    Filters,
    checkpoint_history,
    event_detail,
    inclusion_proof,
    query_page,
)
from ..service._state import ServiceState
from ..service._verify_jobs import start_verify
from . import _signin
from ._base import (
    CsrfFailed,
    LoginRequired,
    SessionDep,
    StateDep,
    check_csrf,
    entitled,
    ip,
    lang,
    render,
)
from ._charts import stacked_bars
from ._i18n import LABELS

__all__ = ["router", "ui_router"]

_HERE = Path(__file__).parent
_OVERVIEW_DAYS = 14
_OVERVIEW_CAP = 50_000  # events read per chart at most; the page says when it is capped

router = APIRouter(include_in_schema=False)


def ui_router(app: FastAPI) -> None:
    """Mount the officer UI on ``app`` under ``/ui``."""
    app.mount("/ui/static", StaticFiles(directory=str(_HERE / "static")), name="ui-static")
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfFailed, _csrf_failed)
    app.include_router(_signin.router)
    app.include_router(router)


async def _to_login(request: Request, exc: Exception) -> Response:
    if request.url.path.endswith(".json"):
        return JSONResponse({"error": "an officer login is required"}, status_code=401)
    return RedirectResponse("/ui/login", status_code=303)


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        {"error": "the form's CSRF token is missing or wrong; reload the page"},
        status_code=403,
    )


# -- overview -----------------------------------------------------------------------
async def _per_day(
    st: ServiceState, days: list[str], action: str, *, by_enclave: bool
) -> tuple[dict[str, list[int]], bool]:
    """Events of ``action`` per day of ``days`` (per enclave, or one series), and whether
    the count stopped at :data:`_OVERVIEW_CAP`."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * len(days))
    pos = {d: i for i, d in enumerate(days)}
    cursor: str | None = None
    seen = 0
    capped = False
    while True:
        rows, cursor = await query_page(
            st, Filters(action=action, since=days[0] + "T00:00:00Z"), cursor=cursor, limit=1000
        )
        for e in rows:
            day = str(e.get("received") or e.get("time"))[:10]
            if day in pos and entitled(e):  # a forged source counts for nothing
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
    return dict(counts), capped


async def _overview_charts(
    st: ServiceState, days: list[str], t: Mapping[str, str]
) -> tuple[list[tuple[str, str]], bool]:
    """The overview's four charts as (title, svg), and whether any was capped."""
    capped = False
    charts: list[tuple[str, str]] = []
    groups = [
        ("entries_per_day", ("session.started",), True),
        ("failed_factors", ("auth.factor.failed",), False),
        ("lockouts", ("auth.lockout",), False),
        ("exports", ("export.approved", "export.downloaded", "export.rejected"), False),
    ]
    for title, actions, by_enclave in groups:
        series: dict[str, list[int]] = {}
        for action in actions:
            counts, cut = await _per_day(st, days, action, by_enclave=by_enclave)
            series.update(counts)
            capped = capped or cut
        charts.append((t[title], stacked_bars(days=days, series=series, title=t[title])))
    return charts, capped


@router.get("/ui/", response_class=HTMLResponse)
async def overview(request: Request, st: StateDep, session: SessionDep) -> HTMLResponse:
    t = LABELS[lang(request)]
    today = dt.datetime.now(dt.UTC).date()
    days = [
        (today - dt.timedelta(days=_OVERVIEW_DAYS - 1 - i)).isoformat()
        for i in range(_OVERVIEW_DAYS)
    ]
    charts, capped = await _overview_charts(st, days, t)
    size = await st.call(st.log.size)
    await st.record_read(
        session.officer,
        view="overview",
        query={"since": days[0] + "T00:00:00Z"},
        client_ip=ip(request),
    )
    return render(
        request,
        "overview.html",
        {"charts": charts, "size": size, "capped": capped},
        session=session,
    )


# -- search and timeline ---------------------------------------------------------------
@router.get("/ui/search", response_class=HTMLResponse)
async def search(
    request: Request,
    st: StateDep,
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
    form = {
        "actor": actor,
        "enclave": enclave,
        "action": action,
        "outcome": outcome,
        "source": source,
        "since": since,
        "until": until,
        "order": "asc" if order == "asc" else "desc",
    }
    filters = _search_filters(form)
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
        client_ip=ip(request),
    )
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
            "export_query": urlencode(filters.target()),
        },
        session=session,
        status=400 if error else 200,
    )


def _search_filters(form: dict[str, str]) -> Filters:
    """The search form's fields as the read model's filters (empty means any)."""
    return Filters(
        order="asc" if form["order"] == "asc" else "desc",
        actor=form["actor"] or None,
        enclave=form["enclave"] or None,
        action=form["action"] or None,
        outcome=form["outcome"] or None,
        source=form["source"] or None,
        since=_form_time(form["since"]),
        until=_form_time(form["until"]),
    )


@router.get("/ui/actors/{actor:path}", response_class=HTMLResponse)
async def timeline(
    request: Request, st: StateDep, session: SessionDep, actor: str, cursor: str = ""
) -> HTMLResponse:
    events, nxt = await query_page(st, Filters(actor=actor), cursor=cursor or None, limit=200)
    await st.record_read(
        session.officer,
        view="timeline",
        query={"actor": actor} | ({"cursor": cursor} if cursor else {}),
        results=len(events),
        client_ip=ip(request),
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
@router.get("/ui/events/{index}", response_class=HTMLResponse)
async def event_page(
    request: Request, st: StateDep, session: SessionDep, index: int
) -> HTMLResponse:
    detail = await event_detail(st, index)
    cp = await st.call(st.log.latest_checkpoint)
    if cp is None or index >= int(cp.size):
        cp = await asyncio.to_thread(st.publish_now, trigger="demand")
    proof = await inclusion_proof(st, index=index, size=int(cp.size))
    server_ok, server_msg = _server_check(proof, cp)
    vkey = await st.call(st.log.verifier_key)
    await st.record_read(
        session.officer, view="event", query={"index": index}, client_ip=ip(request)
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
@router.get("/ui/checkpoints", response_class=HTMLResponse)
async def checkpoints(request: Request, st: StateDep, session: SessionDep) -> HTMLResponse:
    cps = await checkpoint_history(st)
    vkey = await st.call(st.log.verifier_key)
    await st.record_read(
        session.officer,
        view="checkpoints",
        query={},
        results=len(cps),
        client_ip=ip(request),
    )
    return render(
        request,
        "checkpoints.html",
        {"checkpoints": list(reversed(cps)), "vkey": vkey},
        session=session,
    )


@router.post("/ui/checkpoints")
async def publish(
    request: Request, st: StateDep, session: SessionDep, csrf: Annotated[str, Form()] = ""
) -> Response:
    check_csrf(st, session, csrf)
    cp = await asyncio.to_thread(st.publish_now, trigger="demand")
    await st.record_published(cp, officer=session.officer, client_ip=ip(request))
    return RedirectResponse("/ui/checkpoints", status_code=303)


# -- verify the whole log ---------------------------------------------------------------------
@router.get("/ui/verify", response_class=HTMLResponse)
async def verify_page(request: Request, session: SessionDep) -> HTMLResponse:
    return render(request, "verify.html", {}, session=session)


@router.post("/ui/verify")
async def verify_start(request: Request, st: StateDep, session: SessionDep) -> Response:
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        form = await request.form()
        value = form.get("csrf")
        presented = value if isinstance(value, str) else None
    check_csrf(st, session, presented)
    try:
        job = await start_verify(st, officer_id=session.officer.id, client_ip=ip(request))
    except ServiceError as e:  # answered by the service's one error handler
        st.note_rejection(e.reason, ip(request))
        raise
    if request.headers.get("x-csrf-token") is not None:
        return JSONResponse({"job": job.id, "total": job.total})
    return RedirectResponse(f"/ui/verify?job={job.id}", status_code=303)


@router.get("/ui/verify/{job_id}.json")
async def verify_status(st: StateDep, session: SessionDep, job_id: str) -> Response:
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
