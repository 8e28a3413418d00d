"""The FastAPI application: intake, officer read API, proofs, checkpoints, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from policies import client_address

from ..tokens import TokenStore
from ._core import b64, stored_dict
from ._errors import (
    Backpressure,
    BadRequest,
    Forbidden,
    NotFound,
    QuotaExceeded,
    ServiceError,
    TooManyFailures,
    Unauthenticated,
)
from ._headers import SecurityHeaders
from ._officer import Officer, Officers
from ._oidc import OidcConfig, OidcLogin
from ._state import ServiceSettings, ServiceState
from ._tiles import tiles_router

__all__ = ["create_app"]

SESSION_COOKIE = "__Host-enclave_audit"
INSECURE_SESSION_COOKIE = "enclave_audit"

_INTAKE_DOC = """Append a batch of up to 1000 events, atomically: the whole batch is appended
or nothing of it is. Authenticate with the source's intake token
(`Authorization: Bearer eat_...`); every event's `source` must be the token's source,
and its `action` one that source may send (403 `action_not_allowed` otherwise).

The answer lists the durable index of each event, in order. An event whose `id` the log
already holds for the same `source` and `enclave` is not appended again; its existing
index is returned (so a client may safely re-send after a lost answer). On 429 (this
token's quota of events or bytes per minute) or 503 wait `Retry-After` seconds and
re-send the same batch."""


class IntakeAccepted(BaseModel):
    model_config = ConfigDict(frozen=True)
    indexes: list[int] = Field(description="the durable index of each event, in batch order")


class ErrorBody(BaseModel):
    error: str = Field(description="one sentence naming what was wrong")
    reason: str = Field(description="machine-readable reason, e.g. invalid_event")
    index: int | None = Field(default=None, description="the offending event's batch index")
    field: str | None = Field(default=None, description="the offending field")


class EventPage(BaseModel):
    events: list[dict[str, Any]]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null at the end"
    )


class InclusionProofBody(BaseModel):
    index: int
    size: int
    entry: str = Field(description="the exact leaf bytes, base64")
    leaf_hash: str
    hashes: list[str]
    root_hash: str = Field(description="the root of the tree of `size`, base64")
    checkpoint: str | None = Field(
        default=None, description="the signed checkpoint of `size` (when `size` was omitted)"
    )


class ConsistencyProofBody(BaseModel):
    old: int
    size: int
    hashes: list[str]


_ERR: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody, "description": "quota: retry after `Retry-After` seconds"},
    503: {"model": ErrorBody, "description": "back-pressure: retry after `Retry-After` seconds"},
}


class EventIndexError(BadRequest):
    """A refused intake batch: which event (``index``) and which ``field``, if known."""

    def __init__(
        self,
        message: str,
        *,
        index: int | None,
        field: str | None,
        status: int = 422,
        reason: str = "invalid_event",
    ):
        super().__init__(message, reason=reason)
        self.index = index
        self.field = field
        self.status = status


def client_ip(request: Request) -> str | None:
    """The client's address in canonical form: the TCP peer, or the address trusted
    proxies (``--trusted-proxy``) put in X-Forwarded-For, every line of it read as one
    list from the right; None when it is not an IP."""
    return client_address(
        peer=request.client.host if request.client else None,
        forwarded_for=request.headers.getlist("x-forwarded-for"),
        trusted_proxies=_state(request).proxies,
    )


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.audit
    return state


def session_cookie_name(settings: ServiceSettings) -> str:
    return SESSION_COOKIE if settings.secure_cookies else INSECURE_SESSION_COOKIE


def current_officer(request: Request) -> Officer:
    """The officer behind a request: a session cookie or the bootstrap bearer token."""
    st = _state(request)
    token = _bearer(request.headers.get("authorization"))
    if token is not None:
        ip = client_ip(request)
        locked = st.officers.locked_for(ip)
        if locked > 0:
            st.note_rejection("officer_token_locked", ip)
            raise TooManyFailures(
                "too many wrong officer tokens from this address; retry later",
                retry_after=math.ceil(locked),
            )
        officer = st.officers.check_token(token)
        if officer is None:
            # Counted towards the address's lock, and summarised into the log as
            # audit.intake.rejected (reason officer_token): guessing leaves a record.
            st.officers.note_failure(ip)
            st.note_rejection("officer_token", ip)
            raise Unauthenticated("the officer token is not valid")
        return officer
    sess = st.officers.session(request.cookies.get(session_cookie_name(st.settings)))
    if sess is None:
        raise Unauthenticated("an officer login is required")
    return sess.officer


OfficerDep = Annotated[Officer, Depends(current_officer)]


def _parse_time(name: str, value: str | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"query parameter {name!r} is not an RFC 3339 time: {value[:40]!r}"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    from .._store import parse_time_ns
    from ..errors import ConfigError

    try:
        parse_time_ns(t)  # within what the store holds, so no query can overflow
    except (ConfigError, OverflowError):
        raise BadRequest(
            f"query parameter {name!r}: {value[:40]!r} is outside 1677 to 2262"
        ) from None
    return t


class Filters(BaseModel):
    """The officer filters of the read API (all optional, combined with AND)."""

    actor: str | None = None
    enclave: str | None = None
    action: str | None = None
    outcome: str | None = None
    source: str | None = None
    since: str | None = Field(default=None, description="RFC 3339, inclusive")
    until: str | None = Field(default=None, description="RFC 3339, exclusive")
    order: Literal["asc", "desc"] = Field(
        default="asc", description="by the sender's time: asc (oldest first) or desc"
    )

    def target(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in self.model_dump().items()
            if v not in (None, "") and not (k == "order" and v == "asc")
        }

    def query(self) -> Any:
        from .._store import Query as CoreQuery

        kw: dict[str, Any] = {
            k: v
            for k, v in self.model_dump().items()
            if k not in ("since", "until", "order") and v not in (None, "")
        }
        kw["newest_first"] = self.order == "desc"
        since = _parse_time("since", self.since)
        until = _parse_time("until", self.until)
        if since is not None:
            kw["since"] = since
        if until is not None:
            kw["until"] = until
        try:
            return CoreQuery(**kw)
        except (ValueError, TypeError) as e:
            raise BadRequest(f"bad filter: {e}") from None


def _filters(
    actor: str | None = None,
    enclave: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    source: str | None = None,
    since: str | None = None,
    until: str | None = None,
    order: Literal["asc", "desc"] = "asc",
) -> Filters:
    return Filters(
        actor=actor,
        enclave=enclave,
        action=action,
        outcome=outcome,
        source=source,
        since=since,
        until=until,
        order=order,
    )


FiltersDep = Annotated[Filters, Depends(_filters)]


async def query_page(
    st: ServiceState, filters: Filters, *, cursor: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    q = filters.query()
    try:
        rows, nxt = await st.call(st.log.query, q, cursor=cursor, limit=limit)
    except ValueError as e:
        raise BadRequest(f"bad cursor or filter: {e}") from None
    return [stored_dict(r) for r in rows], (None if nxt is None else str(nxt))


_CSV_FIELDS = (
    "index",
    "received",
    "time",
    "source",
    "actor",
    "action",
    "enclave",
    "outcome",
    "client_ip",
    "id",
    "details",
)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    else:
        text = str(value)
    # spreadsheet formula injection: a leading = + - @ (or tab/CR) is made inert
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        text = "'" + text
    return text


def csv_lines(events: list[dict[str, Any]], *, header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    if header:
        w.writerow(_CSV_FIELDS)
    for e in events:
        w.writerow([_csv_cell(e.get(k)) for k in _CSV_FIELDS])
    return buf.getvalue()


def _intake_router() -> APIRouter:
    r = APIRouter(tags=["intake"])

    @r.post(
        "/v1/events",
        response_model=IntakeAccepted,
        responses=_ERR,
        summary="Append a batch of events (atomic, idempotent by event id)",
        description=_INTAKE_DOC,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": 1000,
                                    "items": {
                                        "type": "object",
                                        "description": "an audit event (DESIGN.md: id, time, "
                                        "source, actor, action, enclave, outcome, client_ip, "
                                        "details); at most 64 KiB",
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def intake(request: Request) -> Response:
        st = _state(request)
        try:
            return await _intake(request, st)
        except ServiceError as e:
            st.metrics.reject(e.reason)
            st.note_rejection(e.reason, client_ip(request))
            raise
        finally:
            slot = getattr(request.state, "body_slot", None)
            if slot is not None:
                st.bodies.release(slot)

    return r


async def _intake(request: Request, st: ServiceState) -> Response:
    from .._actions import action_spec
    from .._events import check_time_near, parse_event, time_ns, utc_now
    from ..errors import EventError

    token = _bearer(request.headers.get("authorization"))
    grant = st.tokens.authenticate_record(token) if token else None
    if grant is None:
        raise Unauthenticated(
            "a valid intake token is required (Authorization: Bearer eat_...); "
            "it is missing, unknown, revoked or expired"
        )
    source = grant.source
    # issue #12, item 3 (_quota.py): the disk, the memory and the token's quota are
    # checked before the body is read; the slot is released by the caller
    st.floor.check(source=source)
    st.bodies.acquire(grant.id)
    request.state.body_slot = grant.id
    limit = st.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise EventIndexError(
            f"the request body is {declared} bytes; at most {limit} are accepted",
            index=None,
            field=None,
            status=413,
            reason="too_large",
        )
    if declared is not None and declared.isdigit():
        st.quotas.check_bytes(token=grant.id, size=int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise EventIndexError(
                f"the request body exceeds {limit} bytes",
                index=None,
                field=None,
                status=413,
                reason="too_large",
            )
        chunks.append(chunk)
    try:
        doc = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as e:
        raise EventIndexError(
            f"the request body is not valid JSON: {e}",
            index=None,
            field=None,
            status=400,
            reason="malformed_json",
        ) from None
    raw = doc.get("events") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or set(doc) != {"events"} or not isinstance(raw, list):
        raise EventIndexError(
            'the body must be a JSON object {"events": [...]} and nothing else',
            index=None,
            field="events",
        )
    if not raw:
        raise EventIndexError("the batch is empty", index=None, field="events")
    if len(raw) > st.settings.max_batch_events:
        raise EventIndexError(
            f"the batch holds {len(raw)} events; at most "
            f"{st.settings.max_batch_events} are accepted",
            index=None,
            field="events",
            status=413,
            reason="too_many_events",
        )
    events = []
    received_ns = time_ns(utc_now())
    for i, obj in enumerate(raw):
        try:
            ev = parse_event(obj)
        except EventError as e:
            raise EventIndexError(
                f"event {i}: {e}; nothing of the batch was appended",
                index=i,
                field=e.field,
            ) from None
        if ev.source != source:
            raise EventIndexError(
                f"event {i}: field 'source': this token may only submit events of source "
                f"{source!r}, not {ev.source!r}; nothing of the batch was appended",
                index=i,
                field="source",
                status=403,
                reason="wrong_source",
            )
        if grant.enclave is not None and ev.enclave != grant.enclave:
            raise EventIndexError(
                f"event {i}: field 'enclave': this token may only submit events of enclave "
                f"{grant.enclave!r}, not {ev.enclave!r}; nothing of the batch was appended",
                index=i,
                field="enclave",
                status=403,
                reason="wrong_enclave",
            )
        spec = action_spec(ev.action)
        if spec is None or not spec.allows(ev.source):
            raise EventIndexError(
                f"event {i}: field 'action': source {ev.source!r} may not send "
                f"{ev.action!r}; nothing of the batch was appended",
                index=i,
                field="action",
                status=403,
                reason="action_not_allowed",
            )
        try:
            check_time_near(ev, received_ns=received_ns)
        except EventError as e:
            raise EventIndexError(
                f"event {i}: {e}; nothing of the batch was appended", index=i, field=e.field
            ) from None
        events.append(ev)
    st.quotas.take(token=grant.id, events=len(events), size=size)
    try:
        result = await st.append(events, client=grant.id)
    except EventError as e:  # e.g. an id already used by a different event
        raise EventIndexError(
            f"{e}; nothing of the batch was appended", index=None, field=e.field
        ) from None
    st.metrics.intake_batch_size.observe(len(events))
    st.metrics.intake_events.labels(source=source).inc(len(events))
    st.metrics.intake_bytes.labels(source=source).inc(size)
    # a ready Response skips re-validating the model on the hot path; the model above
    # still documents the shape in OpenAPI
    return Response(orjson.dumps({"indexes": result.indexes}), media_type="application/json")


def _read_router() -> APIRouter:
    r = APIRouter(tags=["officer read API"])

    @r.get(
        "/v1/events",
        response_model=EventPage,
        responses=_ERR,
        summary="Search events (officer; the search itself is recorded in the log)",
    )
    async def search(
        request: Request,
        officer: OfficerDep,
        filters: FiltersDep,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> EventPage:
        st = _state(request)
        target = filters.target() | ({"cursor": cursor} if cursor else {})
        events, nxt = await query_page(st, filters, cursor=cursor, limit=limit)
        await st.record_read(
            officer, view="search", query=target, results=len(events), client_ip=client_ip(request)
        )
        return EventPage(events=events, next_cursor=nxt)

    @r.get(
        "/v1/export",
        responses=_ERR,
        summary="Export every event matching the filters as CSV or JSON (officer; recorded)",
        response_class=StreamingResponse,
    )
    async def export(
        request: Request,
        officer: OfficerDep,
        filters: FiltersDep,
        format: Annotated[str, Query(pattern="^(csv|json)$")] = "json",
    ) -> StreamingResponse:
        st = _state(request)
        filters.query()  # validate before anything is recorded or streamed
        await st.record_read(
            officer,
            view="export",
            query=filters.target(),
            fmt=format,
            client_ip=client_ip(request),
        )

        async def body() -> AsyncIterator[bytes]:
            cursor: str | None = None
            first = True
            if format == "json":
                yield b"["
            while True:
                events, cursor = await query_page(st, filters, cursor=cursor, limit=1000)
                if format == "csv":
                    yield csv_lines(events, header=first).encode("utf-8")
                else:
                    for e in events:
                        yield (b"" if first else b",\n") + orjson.dumps(e)
                        first = False
                first = False
                if cursor is None:
                    break
            if format == "json":
                yield b"]\n"

        media = "text/csv; charset=utf-8" if format == "csv" else "application/json"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            body(),
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="audit-export-{stamp}.{format}"'
            },
        )

    @r.get(
        "/v1/events/{index}",
        responses=_ERR,
        summary="One event with its exact leaf bytes (officer; recorded)",
    )
    async def one(request: Request, officer: OfficerDep, index: int) -> dict[str, Any]:
        st = _state(request)
        detail = await event_detail(st, index)
        await st.record_read(
            officer, view="event", query={"index": index}, client_ip=client_ip(request)
        )
        return detail

    @r.get(
        "/v1/proofs/inclusion",
        response_model=InclusionProofBody,
        responses=_ERR,
        summary="RFC 9162 inclusion proof of entry `index` in the tree of `size` (officer)",
    )
    async def inclusion(
        request: Request, officer: OfficerDep, index: int, size: int | None = None
    ) -> InclusionProofBody:
        st = _state(request)
        proof = await inclusion_proof(st, index=index, size=size)
        await st.record_read(
            officer,
            view="proof",
            query={"index": index, "size": size},
            client_ip=client_ip(request),
        )
        return proof

    @r.get("/v1/checkpoints", responses=_ERR, summary="Checkpoint history (officer)")
    async def history(request: Request, officer: OfficerDep) -> list[dict[str, Any]]:
        st = _state(request)
        cps = await checkpoint_history(st)
        await st.record_read(
            officer, view="checkpoints", query={}, results=len(cps), client_ip=client_ip(request)
        )
        return cps

    @r.post(
        "/v1/checkpoints",
        responses=_ERR,
        summary="Integrate and sign a checkpoint now (officer bearer token)",
        response_class=PlainTextResponse,
    )
    async def publish(request: Request, officer: OfficerDep) -> PlainTextResponse:
        st = _state(request)
        if officer.via != "bearer":
            raise Forbidden(
                "use the officer UI's form (with its CSRF token) or the bearer token",
                reason="csrf",
            )
        cp = await asyncio.to_thread(st.publish_now, trigger="demand")
        await st.record_published(cp, officer=officer, client_ip=client_ip(request))
        return PlainTextResponse(cp.text, media_type="text/plain; charset=utf-8")

    return r


async def event_detail(st: ServiceState, index: int) -> dict[str, Any]:
    size = await st.call(st.log.sequenced)
    if index < 0 or index >= size:
        raise NotFound(f"there is no entry {index}; the log holds {size}")
    entry: bytes = await st.call(st.log.entry, index)
    out: dict[str, Any] = {"index": index, "entry": b64(entry)}
    out["event"] = stored_dict(await st.call(st.log.stored_event, index))
    return out


async def inclusion_proof(st: ServiceState, *, index: int, size: int | None) -> InclusionProofBody:
    """The proof for ``index`` at ``size``; without ``size``, at the latest signed
    checkpoint that covers ``index`` (signing one now if none does yet)."""
    import hashlib

    checkpoint: str | None = None
    if size is None:
        cp = await st.call(st.log.latest_checkpoint)
        if cp is None or index >= int(cp.size):
            cp = await asyncio.to_thread(st.publish_now, trigger="demand")
        size = int(cp.size)
        checkpoint = cp.text
    tree = await st.call(st.log.size)
    if not (0 <= index < size <= tree):
        raise NotFound(
            f"no inclusion proof for index {index} in size {size}; the tree has {tree} entries"
        )
    entry: bytes = await st.call(st.log.entry, index)
    hashes: list[bytes] = await st.call(st.log.inclusion_proof, index, size)
    root: bytes = await st.call(st.log.root_hash, size)
    leaf = hashlib.sha256(b"\x00" + entry).digest()
    return InclusionProofBody(
        index=index,
        size=size,
        entry=b64(entry),
        leaf_hash=b64(leaf),
        hashes=[b64(h) for h in hashes],
        root_hash=b64(root),
        checkpoint=checkpoint,
    )


async def checkpoint_history(st: ServiceState) -> list[dict[str, Any]]:
    cps = await st.call(st.log.checkpoints)
    return [{"size": int(c.size), "root_hash": b64(c.root_hash), "text": c.text} for c in cps]


def _public_router() -> APIRouter:
    r = APIRouter(tags=["public: checkpoints and proofs for verifiers"])

    @r.get(
        "/v1/checkpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (C2SP tlog-checkpoint, signed-note)",
    )
    async def latest(request: Request) -> PlainTextResponse:
        st = _state(request)
        cp = await st.call(st.log.latest_checkpoint)
        if cp is None:
            raise NotFound("the log has not signed a checkpoint yet")
        return PlainTextResponse(cp.text, media_type="text/plain; charset=utf-8")

    @r.get(
        "/v1/proofs/consistency",
        response_model=ConsistencyProofBody,
        responses=_ERR,
        summary="RFC 9162 consistency proof from tree size `old` to `size`",
    )
    async def consistency(
        request: Request, old: int, size: int | None = None
    ) -> ConsistencyProofBody:
        st = _state(request)
        tree = await st.call(st.log.size)
        n = tree if size is None else size
        if not (0 < old <= n <= tree):
            raise NotFound(f"no consistency proof from {old} to {n}; the tree has {tree} entries")
        hashes = await st.call(st.log.consistency_proof, old, n)
        return ConsistencyProofBody(old=old, size=n, hashes=[b64(h) for h in hashes])

    @r.get(
        "/v1/key",
        response_class=PlainTextResponse,
        summary="The log's verifier key (note format: name+hexid+base64)",
    )
    async def key(request: Request) -> PlainTextResponse:
        st = _state(request)
        vk = await st.call(st.log.verifier_key)
        return PlainTextResponse(vk + "\n")

    @r.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return r


def _error_response(exc: ServiceError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.message, "reason": exc.reason}
    if isinstance(exc, EventIndexError):
        body["index"] = exc.index
        body["field"] = exc.field
    headers = {}
    if isinstance(exc, Backpressure | TooManyFailures | QuotaExceeded):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=exc.status, headers=headers)


def create_app(
    *,
    log: Any,
    tokens: TokenStore,
    officer_token_file: Path | None,
    settings: ServiceSettings | None = None,
    oidc: OidcConfig | None = None,
) -> FastAPI:
    """The audit service over an open ``AuditLog``.

    ``tokens`` authorises intake per source; ``officer_token_file`` holds the bootstrap
    officer token (None: every officer read is refused, there is no open access);
    ``oidc`` lets officers sign in through the portal's OpenID Connect provider."""
    settings = settings or ServiceSettings()
    state = ServiceState(
        log=log,
        tokens=tokens,
        officers=Officers(
            token_file=officer_token_file,
            idle_seconds=settings.session_idle_seconds,
            max_seconds=settings.session_max_seconds,
            max_failures=settings.max_login_failures,
            failure_window=settings.login_window_seconds,
        ),
        settings=settings,
        oidc=OidcLogin(config=oidc) if oidc is not None else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.writer.start()
        task = asyncio.create_task(state.publisher())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            state.writer.stop()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(state.report_rejections_sync)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(state.integrate_and_publish, trigger="shutdown")

    app = FastAPI(
        title="Enclave audit service",
        version="1",
        description=(
            "Intake of audit events from Enclave components, the officers' read API, and "
            "the RFC 9162 proofs and C2SP checkpoints that let anyone verify the log."
        ),
        lifespan=lifespan,
        docs_url=None,  # Swagger/ReDoc pages load scripts from a CDN: only /openapi.json
        redoc_url=None,
    )
    app.state.audit = state
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error_response(exc)

    from ..errors import AuditError, IntegrityError, StoreError, TemporaryError

    @app.exception_handler(TemporaryError)
    async def _temporary(request: Request, exc: TemporaryError) -> JSONResponse:
        return _error_response(
            Backpressure(
                f"the audit store is busy: {exc}; retry later",
                retry_after=max(1, round(exc.delay)),
                reason="store_error",
            )
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path"))
        kind = {"query": "query parameter", "path": "path parameter"}.get(
            str((first.get("loc") or ("",))[0]), "input"
        )
        msg = f"{kind} {where!r}: {first.get('msg', 'is not valid')}"
        return _error_response(BadRequest(msg, reason="bad_request"))

    @app.exception_handler(AuditError)
    async def _audit_error(request: Request, exc: AuditError) -> JSONResponse:
        if isinstance(exc, StoreError | IntegrityError):
            # the store failed or holds something it should not: not the caller's fault
            logging.getLogger("audit.service").error("store failure: %s", exc)
            return _error_response(
                Backpressure(
                    "the audit store failed this request; retry later",
                    retry_after=settings.retry_after_seconds,
                    reason="store_error",
                )
            )
        return _error_response(BadRequest(str(exc), reason="bad_request"))

    app.include_router(_intake_router())
    app.include_router(_read_router())
    app.include_router(_public_router())
    app.include_router(tiles_router())
    return app
