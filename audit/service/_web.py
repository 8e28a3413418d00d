"""What every route of the audit service shares: the service state of a request, the
client's address, the officer behind a request, and the error body the API documents.

Used by the intake, read and public routers and by the officer UI (``audit.ui``); it
holds no handler of its own.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, Field

from policies import client_address

from ._errors import TooManyFailures, Unauthenticated
from ._officer import Officer
from ._state import ServiceSettings, ServiceState

__all__ = [
    "ERROR_RESPONSES",
    "INSECURE_SESSION_COOKIE",
    "SESSION_COOKIE",
    "ErrorBody",
    "OfficerDep",
    "StateDep",
    "bearer",
    "client_ip",
    "current_officer",
    "service_state",
    "session_cookie_name",
]

SESSION_COOKIE = "__Host-enclave_audit"
INSECURE_SESSION_COOKIE = "enclave_audit"


class ErrorBody(BaseModel):
    error: str = Field(description="one sentence naming what was wrong")
    reason: str = Field(description="machine-readable reason, e.g. invalid_event")
    index: int | None = Field(default=None, description="the offending event's batch index")
    field: str | None = Field(default=None, description="the offending field")


#: the error answers every API route documents (OpenAPI ``responses``)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    413: {"model": ErrorBody},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody, "description": "quota: retry after `Retry-After` seconds"},
    503: {"model": ErrorBody, "description": "back-pressure: retry after `Retry-After` seconds"},
}


def service_state(request: Request) -> ServiceState:
    """The state ``create_app`` put on the application."""
    state: ServiceState = request.app.state.audit
    return state


def client_ip(request: Request) -> str | None:
    """The client's address in canonical form: the TCP peer, or the address trusted
    proxies (``--trusted-proxy``) put in X-Forwarded-For, every line of it read as one
    list from the right; None when it is not an IP."""
    return client_address(
        peer=request.client.host if request.client else None,
        forwarded_for=request.headers.getlist("x-forwarded-for"),
        trusted_proxies=service_state(request).proxies,
    )


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header; None for anything else."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def session_cookie_name(settings: ServiceSettings) -> str:
    return SESSION_COOKIE if settings.secure_cookies else INSECURE_SESSION_COOKIE


def current_officer(request: Request) -> Officer:
    """The officer behind a request: a session cookie or the bootstrap bearer token."""
    st = service_state(request)
    token = bearer(request.headers.get("authorization"))
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
StateDep = Annotated[ServiceState, Depends(service_state)]
