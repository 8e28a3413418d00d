"""The FastAPI application: the intake, read and tiles routers, the public checkpoint
and proof routes, and the one place service errors become HTTP answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from ..errors import AuditError, IntegrityError, StoreError, TemporaryError
from ..http_headers import SecurityHeaders
from ..tokens import TokenStore
from . import _intake_api, _read_api
from ._core import b64
from ._errors import (
    Backpressure,
    BadRequest,
    EventIndexError,
    NotFound,
    QuotaExceeded,
    ServiceError,
    TooManyFailures,
    Unauthenticated,
)
from ._headers import CSP
from ._officer import Officers
from ._oidc import OidcConfig, OidcLogin
from ._reads import ConsistencyProofBody, csv_lines, latest_checkpoint_text
from ._state import ServiceSettings, ServiceState
from ._tiles import tiles_router
from ._web import ERROR_RESPONSES, StateDep, service_state

# csv_lines: where tests/unit/audit_service/test_ui_pieces.py has always imported it from
__all__ = ["create_app", "csv_lines"]

_public = APIRouter(tags=["public: checkpoints and proofs for verifiers"])


@_public.get(
    "/v1/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint, signed-note)",
)
async def latest(st: StateDep) -> PlainTextResponse:
    text = await latest_checkpoint_text(st)
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


@_public.get(
    "/v1/proofs/consistency",
    response_model=ConsistencyProofBody,
    responses=ERROR_RESPONSES,
    summary="RFC 9162 consistency proof from tree size `old` to `size`",
)
async def consistency(st: StateDep, old: int, size: int | None = None) -> ConsistencyProofBody:
    tree = await st.call(st.log.size)
    n = tree if size is None else size
    if not (0 < old <= n <= tree):
        raise NotFound(f"no consistency proof from {old} to {n}; the tree has {tree} entries")
    hashes = await st.call(st.log.consistency_proof, old, n)
    return ConsistencyProofBody(old=old, size=n, hashes=[b64(h) for h in hashes])


@_public.get(
    "/v1/key",
    response_class=PlainTextResponse,
    summary="The log's verifier key (note format: name+hexid+base64)",
)
async def key(st: StateDep) -> PlainTextResponse:
    vk = await st.call(st.log.verifier_key)
    return PlainTextResponse(vk + "\n")


@_public.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


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


async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
    return _error_response(exc)


async def _temporary(request: Request, exc: TemporaryError) -> JSONResponse:
    return _error_response(
        Backpressure(
            f"the audit store is busy: {exc}; retry later",
            retry_after=max(1, round(exc.delay)),
            reason="store_error",
        )
    )


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(x) for x in first.get("loc", ()) if x not in ("query", "path"))
    kind = {"query": "query parameter", "path": "path parameter"}.get(
        str((first.get("loc") or ("",))[0]), "input"
    )
    msg = f"{kind} {where!r}: {first.get('msg', 'is not valid')}"
    return _error_response(BadRequest(msg, reason="bad_request"))


async def _audit_error(request: Request, exc: AuditError) -> JSONResponse:
    if isinstance(exc, StoreError | IntegrityError):
        # the store failed or holds something it should not: not the caller's fault
        logging.getLogger("audit.service").error("store failure: %s", exc)
        return _error_response(
            Backpressure(
                "the audit store failed this request; retry later",
                retry_after=service_state(request).settings.retry_after_seconds,
                reason="store_error",
            )
        )
    return _error_response(BadRequest(str(exc), reason="bad_request"))


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The writer and the checkpoint publisher run while the app serves; on the way out
    the pending rejections are summarised into the log and a last checkpoint signed."""
    state: ServiceState = app.state.audit
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
    officers = Officers(
        token_file=officer_token_file,
        idle_seconds=settings.session_idle_seconds,
        max_seconds=settings.session_max_seconds,
        max_failures=settings.max_login_failures,
        failure_window=settings.login_window_seconds,
    )
    app = FastAPI(
        title="Enclave audit service",
        version="1",
        description=(
            "Intake of audit events from Enclave components, the officers' read API, and "
            "the RFC 9162 proofs and C2SP checkpoints that let anyone verify the log."
        ),
        lifespan=_lifespan,
        docs_url=None,  # Swagger/ReDoc pages load scripts from a CDN: only /openapi.json
        redoc_url=None,
    )
    app.state.audit = ServiceState(
        log=log,
        tokens=tokens,
        officers=officers,
        settings=settings,
        oidc=OidcLogin(config=oidc) if oidc is not None else None,
    )
    # HSTS on HTTPS requests only: the service sends it wherever TLS reaches it
    app.add_middleware(SecurityHeaders, csp=CSP, hsts=True)
    app.exception_handler(ServiceError)(_service_error)
    app.exception_handler(TemporaryError)(_temporary)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(AuditError)(_audit_error)
    for router in (_intake_api.router, _read_api.router, _public, tiles_router()):
        app.include_router(router)
    return app
