"""One error hierarchy for the portal; the HTTP status lives in the type.

Messages are one sentence naming what was wrong; they never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "AuditUnavailableError",
    "AuthError",
    "ConflictError",
    "FactorFailedError",
    "ForbiddenError",
    "InvalidInputError",
    "NotFoundError",
    "ThrottledError",
    "UnauthenticatedError",
]


class AuthError(Exception):
    """Base class: every error the portal raises on purpose."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(AuthError):
    """The caller sent something malformed or out of bounds (HTTP 400)."""

    status_code = 400


class FactorFailedError(AuthError):
    """A factor was presented and did not verify (HTTP 401); always audited."""

    status_code = 401


class UnauthenticatedError(AuthError):
    """No valid session or client authentication (HTTP 401)."""

    status_code = 401


class ForbiddenError(AuthError):
    """Authenticated, but not allowed (HTTP 403)."""

    status_code = 403


class NotFoundError(AuthError):
    """The named thing does not exist (HTTP 404)."""

    status_code = 404


class ConflictError(AuthError):
    """The request conflicts with the current state (HTTP 409)."""

    status_code = 409


class ThrottledError(AuthError):
    """Too many failures; retry after ``retry_after_s`` seconds (HTTP 429)."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class AuditUnavailableError(AuthError):
    """The audit sink cannot record; the portal refuses to act (HTTP 503)."""

    status_code = 503
    retry_after_s = 5
