"""Bounded hand-off from intake handlers to ``AuditLog.append``.

``AuditLog.append`` is thread-safe and groups concurrent calls into one transaction
(group commit); it is idempotent by event id. This module only bounds how many
batches may be waiting for it: past ``max_pending`` a batch is refused at once with
``Backpressure`` (503 + Retry-After), so memory stays bounded and nothing that was
acknowledged can be lost. A batch is acknowledged only when ``append`` has returned,
i.e. once it is durable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._errors import Backpressure

__all__ = ["AppendResult", "Writer"]


@dataclass(frozen=True)
class AppendResult:
    """The durable indexes of a batch, in batch order."""

    indexes: tuple[int, ...]


class Writer:
    """See the module docstring."""

    def __init__(
        self,
        *,
        append: Callable[[Sequence[Any]], list[int]],
        max_pending: int = 256,
        threads: int = 8,
        retry_after: int = 1,
        on_appended: Callable[[Sequence[Any], float], None] | None = None,
    ) -> None:
        self._append = append
        self._max_pending = max_pending
        self._threads = threads
        self._retry_after = retry_after
        self._on_appended = on_appended
        self._pending = 0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._threads, thread_name_prefix="audit-append"
            )

    def stop(self) -> None:
        """Wait for every accepted batch to finish, then stop the threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, events: Sequence[Any]) -> Future[AppendResult]:
        with self._lock:
            if self._pool is None:
                raise Backpressure(
                    "the audit service is starting or stopping; retry later",
                    retry_after=self._retry_after,
                )
            if self._pending >= self._max_pending:
                raise Backpressure(
                    "the audit service is at capacity; nothing of this batch was appended, "
                    "retry later",
                    retry_after=self._retry_after,
                )
            self._pending += 1
            pool = self._pool
        try:
            return pool.submit(self._run, events)
        except RuntimeError:
            with self._lock:
                self._pending -= 1
            raise Backpressure(
                "the audit service is stopping; retry later", retry_after=self._retry_after
            ) from None

    def _run(self, events: Sequence[Any]) -> AppendResult:
        try:
            t0 = time.perf_counter()
            indexes = self._append(events)
            if self._on_appended is not None:
                self._on_appended(events, time.perf_counter() - t0)
            return AppendResult(indexes=tuple(indexes))
        finally:
            with self._lock:
                self._pending -= 1
