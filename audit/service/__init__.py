"""The audit service: HTTP intake for every component, the officers' read API and UI.

Called by ``enclave audit serve`` (and by tests and benchmarks through ``create_app``;
``metrics_app`` serves ``/metrics`` on a listener of its own).
It appends only validated, authenticated batches, whole or not at all, and answers
an intake request only once its events are durable; it never edits the log.
"""

from __future__ import annotations

from ._app import create_app
from ._errors import (
    Backpressure,
    BadRequest,
    Forbidden,
    NotFound,
    QuotaExceeded,
    ServiceError,
    Unauthenticated,
)
from ._metrics import metrics_app
from ._state import ServiceSettings

__all__ = [
    "Backpressure",
    "BadRequest",
    "Forbidden",
    "NotFound",
    "QuotaExceeded",
    "ServiceError",
    "ServiceSettings",
    "Unauthenticated",
    "create_app",
    "metrics_app",
]
