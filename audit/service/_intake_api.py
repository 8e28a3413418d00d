"""The intake API (``POST /v1/events``): a source's token, its quotas, the body's limits,
then every event checked before any is appended; the batch is appended whole or not at
all, and answered only once durable.

Included by ``create_app``; each step is a function of its own so the order of the
checks reads from ``intake`` down.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .._actions import action_spec
from .._events import Event, check_time_near, parse_event, time_ns, utc_now
from ..errors import EventError
from ..tokens import TokenRecord
from ._errors import EventIndexError, ServiceError, Unauthenticated
from ._state import ServiceState
from ._web import ERROR_RESPONSES, bearer, client_ip, service_state

__all__ = ["IntakeAccepted", "router"]

_INTAKE_DOC = """Append a batch of up to 1000 events, atomically: the whole batch is appended
or nothing of it is. Authenticate with the source's intake token
(`Authorization: Bearer eat_...`); every event's `source` must be the token's source,
and its `action` one that source may send (403 `action_not_allowed` otherwise).

The answer lists the durable index of each event, in order. An event whose `id` the log
already holds for the same `source` and `enclave` is not appended again; its existing
index is returned (so a client may safely re-send after a lost answer). On 429 (this
token's quota of events or bytes per minute) or 503 wait `Retry-After` seconds and
re-send the same batch."""

_REQUEST_BODY: dict[str, Any] = {
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


class IntakeAccepted(BaseModel):
    model_config = ConfigDict(frozen=True)
    indexes: list[int] = Field(description="the durable index of each event, in batch order")


router = APIRouter(tags=["intake"])


@router.post(
    "/v1/events",
    response_model=IntakeAccepted,
    responses=ERROR_RESPONSES,
    summary="Append a batch of events (atomic, idempotent by event id)",
    description=_INTAKE_DOC,
    openapi_extra={"requestBody": _REQUEST_BODY},
)
async def intake(request: Request) -> Response:
    st = service_state(request)
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


async def _intake(request: Request, st: ServiceState) -> Response:
    token = bearer(request.headers.get("authorization"))
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
    body = await _read_body(request, st, grant=grant)
    raw = _batch(body, st)
    received_ns = time_ns(utc_now())
    events = [
        _checked_event(i, obj, grant=grant, received_ns=received_ns) for i, obj in enumerate(raw)
    ]
    st.quotas.take(token=grant.id, events=len(events), size=len(body))
    try:
        result = await st.append(events, client=grant.id)
    except EventError as e:  # e.g. an id already used by a different event
        raise EventIndexError(
            f"{e}; nothing of the batch was appended", index=None, field=e.field
        ) from None
    st.metrics.intake_batch_size.observe(len(events))
    st.metrics.intake_events.labels(source=source).inc(len(events))
    st.metrics.intake_bytes.labels(source=source).inc(len(body))
    # a ready Response skips re-validating the model on the hot path; the model above
    # still documents the shape in OpenAPI
    return Response(orjson.dumps({"indexes": result.indexes}), media_type="application/json")


async def _read_body(request: Request, st: ServiceState, *, grant: TokenRecord) -> bytes:
    """The request body, refused past the size limit (declared or streamed) or the
    token's byte quota before it is read whole."""
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
    return b"".join(chunks)


def _batch(body: bytes, st: ServiceState) -> list[Any]:
    """The events of a body that is exactly ``{"events": [...]}``, within the batch limit."""
    try:
        doc = orjson.loads(body)
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
    return raw


def _checked_event(i: int, obj: Any, *, grant: TokenRecord, received_ns: int) -> Event:
    """Event ``i`` of the batch, parsed and entitled: the token's source and enclave, an
    action that source may send, a time near ``received_ns``."""
    try:
        ev = parse_event(obj)
    except EventError as e:
        raise EventIndexError(
            f"event {i}: {e}; nothing of the batch was appended",
            index=i,
            field=e.field,
        ) from None
    if ev.source != grant.source:
        raise EventIndexError(
            f"event {i}: field 'source': this token may only submit events of source "
            f"{grant.source!r}, not {ev.source!r}; nothing of the batch was appended",
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
    return ev
