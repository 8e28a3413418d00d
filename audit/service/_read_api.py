"""The officers' read API (``/v1/events``, ``/v1/export``, proofs, checkpoints): thin
handlers over the read model (``_reads.py``); every read is recorded in the log.

Included by ``create_app``; the officer UI calls the read model, not these handlers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from ._errors import Forbidden
from ._reads import (
    EventPage,
    Filters,
    FiltersDep,
    InclusionProofBody,
    checkpoint_history,
    csv_lines,
    event_detail,
    inclusion_proof,
    query_page,
)
from ._state import ServiceState
from ._web import ERROR_RESPONSES, OfficerDep, StateDep, client_ip

__all__ = ["router"]

router = APIRouter(tags=["officer read API"])


@router.get(
    "/v1/events",
    response_model=EventPage,
    responses=ERROR_RESPONSES,
    summary="Search events (officer; the search itself is recorded in the log)",
)
async def search(
    request: Request,
    st: StateDep,
    officer: OfficerDep,
    filters: FiltersDep,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    target = filters.target() | ({"cursor": cursor} if cursor else {})
    events, nxt = await query_page(st, filters, cursor=cursor, limit=limit)
    await st.record_read(
        officer, view="search", query=target, results=len(events), client_ip=client_ip(request)
    )
    return EventPage(events=events, next_cursor=nxt)


@router.get(
    "/v1/export",
    responses=ERROR_RESPONSES,
    summary="Export every event matching the filters as CSV or JSON (officer; recorded)",
    response_class=StreamingResponse,
)
async def export(
    request: Request,
    st: StateDep,
    officer: OfficerDep,
    filters: FiltersDep,
    format: Annotated[str, Query(pattern="^(csv|json)$")] = "json",
) -> StreamingResponse:
    filters.query()  # validate before anything is recorded or streamed
    await st.record_read(
        officer,
        view="export",
        query=filters.target(),
        fmt=format,
        client_ip=client_ip(request),
    )
    media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        _export_body(st, filters, fmt=format),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="audit-export-{stamp}.{format}"'},
    )


async def _export_body(st: ServiceState, filters: Filters, *, fmt: str) -> AsyncIterator[bytes]:
    """Every matching event, a page at a time: CSV lines, or one JSON array."""
    cursor: str | None = None
    first = True
    if fmt == "json":
        yield b"["
    while True:
        events, cursor = await query_page(st, filters, cursor=cursor, limit=1000)
        if fmt == "csv":
            yield csv_lines(events, header=first).encode("utf-8")
        else:
            for e in events:
                yield (b"" if first else b",\n") + orjson.dumps(e)
                first = False
        first = False
        if cursor is None:
            break
    if fmt == "json":
        yield b"]\n"


@router.get(
    "/v1/events/{index}",
    responses=ERROR_RESPONSES,
    summary="One event with its exact leaf bytes (officer; recorded)",
)
async def one(request: Request, st: StateDep, officer: OfficerDep, index: int) -> dict[str, Any]:
    detail = await event_detail(st, index)
    await st.record_read(
        officer, view="event", query={"index": index}, client_ip=client_ip(request)
    )
    return detail


@router.get(
    "/v1/proofs/inclusion",
    response_model=InclusionProofBody,
    responses=ERROR_RESPONSES,
    summary="RFC 9162 inclusion proof of entry `index` in the tree of `size` (officer)",
)
async def inclusion(
    request: Request, st: StateDep, officer: OfficerDep, index: int, size: int | None = None
) -> InclusionProofBody:
    proof = await inclusion_proof(st, index=index, size=size)
    await st.record_read(
        officer,
        view="proof",
        query={"index": index, "size": size},
        client_ip=client_ip(request),
    )
    return proof


@router.get("/v1/checkpoints", responses=ERROR_RESPONSES, summary="Checkpoint history (officer)")
async def history(request: Request, st: StateDep, officer: OfficerDep) -> list[dict[str, Any]]:
    cps = await checkpoint_history(st)
    await st.record_read(
        officer, view="checkpoints", query={}, results=len(cps), client_ip=client_ip(request)
    )
    return cps


@router.post(
    "/v1/checkpoints",
    responses=ERROR_RESPONSES,
    summary="Integrate and sign a checkpoint now (officer bearer token)",
    response_class=PlainTextResponse,
)
async def publish(request: Request, st: StateDep, officer: OfficerDep) -> PlainTextResponse:
    if officer.via != "bearer":
        raise Forbidden(
            "use the officer UI's form (with its CSRF token) or the bearer token",
            reason="csrf",
        )
    cp = await asyncio.to_thread(st.publish_now, trigger="demand")
    await st.record_published(cp, officer=officer, client_ip=client_ip(request))
    return PlainTextResponse(cp.text, media_type="text/plain; charset=utf-8")
