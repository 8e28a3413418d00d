"""One error hierarchy for the portal, with no HTTP in it.

Messages are one sentence naming what was wrong; they never contain secrets. The
web layer maps each type to a status in one place (``auth._app.status_of``); the
retry rule lives in the type (``retry_after_s``).
"""

from __future__ import annotations

__all__ = [
    "AuditUnavailableError",
    "AuthError",
    "ConflictError",
    "FactorFailedError",
    "ForbiddenError",
    "InvalidInputError",
    "KeyRingError",
    "NotFoundError",
    "StoreError",
    "ThrottledError",
    "UnauthenticatedError",
]


class AuthError(Exception):
    """Base class: every error the portal raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(AuthError):
    """The caller sent something malformed or out of bounds."""


class FactorFailedError(AuthError):
    """A factor was presented and did not verify; always audited."""


class UnauthenticatedError(AuthError):
    """No valid session or client authentication."""


class ForbiddenError(AuthError):
    """Authenticated, but not allowed."""


class NotFoundError(AuthError):
    """The named thing does not exist."""


class ConflictError(AuthError):
    """The request conflicts with the current state."""


class ThrottledError(AuthError):
    """Too many failures; retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))


class AuditUnavailableError(AuthError):
    """The audit sink cannot record; the portal refuses to act."""

    retry_after_s = 5


class StoreError(AuthError):
    """The database failed underneath us (translated at the store's boundary)."""


class KeyRingError(AuthError):
    """The key file is malformed, or a ciphertext cannot be opened with any key."""
