"""The service's error hierarchy; one exception handler maps it to HTTP answers."""

from __future__ import annotations

__all__ = [
    "Backpressure",
    "BadRequest",
    "EventIndexError",
    "Forbidden",
    "NotFound",
    "QuotaExceeded",
    "ServiceError",
    "TooManyFailures",
    "Unauthenticated",
]


class ServiceError(Exception):
    """An error the client caused or must retry; ``status`` is its HTTP code."""

    status: int = 500
    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class BadRequest(ServiceError):
    """The request is malformed or names an invalid event; nothing was appended."""

    status = 422
    reason = "invalid_event"


class Unauthenticated(ServiceError):
    """No valid credential: a missing, unknown, revoked or expired token."""

    status = 401
    reason = "unauthenticated"


class Forbidden(ServiceError):
    """A valid credential that does not allow this (e.g. another source's events)."""

    status = 403
    reason = "wrong_source"


class NotFound(ServiceError):
    status = 404
    reason = "not_found"


class Backpressure(ServiceError):
    """The service cannot take the batch now; retry after ``retry_after`` seconds.

    Nothing of the batch was appended, so a retry cannot duplicate it (and the
    server ignores event ids it already holds in any case)."""

    status = 503
    reason = "backpressure"

    def __init__(self, message: str, *, retry_after: int, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class TooManyFailures(ServiceError):
    """This client address sent too many wrong credentials; it is refused, without
    checking what it sends, for ``retry_after`` seconds."""

    status = 429
    reason = "locked"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QuotaExceeded(ServiceError):
    """This intake token (or officer) used up its share for now: its events or bytes
    per minute, or its running jobs; retry after ``retry_after`` seconds. Nothing of
    the request was done."""

    status = 429
    reason = "quota"

    def __init__(self, message: str, *, retry_after: int, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


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
