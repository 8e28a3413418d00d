"""Bounded hand-off from intake handlers to ``AuditLog.append``.

``AuditLog.append`` is thread-safe and groups concurrent calls into one transaction
(group commit); it is idempotent by event id. This module only bounds how many
batches may be waiting for it: past ``max_pending`` a batch is refused at once with
``Backpressure`` (503 + Retry-After), so memory stays bounded and nothing that was
acknowledged can be lost. A batch is acknowledged only when ``append`` has returned,
i.e. once it is durable.

No one client may hold more than ``max_pending_per_client`` of those places (a share
of the queue, by default a quarter): a source that floods intake (a runaway or
compromised workspace with a valid token) is refused with 503 while the others'
batches still get in. Refused clients keep their events in their spools, so nothing
is lost either way; the share only decides whose events wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._errors import Backpressure
from ._quota import Shares

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
        max_pending_per_client: int | None = None,
        threads: int = 8,
        retry_after: int = 1,
        on_appended: Callable[[Sequence[Any], float], None] | None = None,
    ) -> None:
        self._append = append
        self._max_pending = max_pending
        self._per_client = (
            max(1, max_pending // 4) if max_pending_per_client is None else max_pending_per_client
        )
        self._shares = Shares()
        self._threads = threads
        self._retry_after = retry_after
        self._on_appended = on_appended
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
        return self._shares.total

    def pending_of(self, client: str) -> int:
        """Batches of ``client`` accepted and not yet finished."""
        with self._lock:
            return self._shares.of(client)

    def submit(self, events: Sequence[Any], *, client: str) -> Future[AppendResult]:
        """Queue ``events`` for one ``append``; ``client`` names who sent them (the
        intake token's id) for the per-client share."""
        with self._lock:
            if self._pool is None:
                raise Backpressure(
                    "the audit service is starting or stopping; retry later",
                    retry_after=self._retry_after,
                )
            if self._shares.total >= self._max_pending:
                raise Backpressure(
                    "the audit service is at capacity; nothing of this batch was appended, "
                    "retry later",
                    retry_after=self._retry_after,
                )
            mine = self._shares.of(client)
            if mine >= self._per_client:
                raise Backpressure(
                    f"this token already has {mine} batches waiting (its share of the "
                    "queue); nothing of this batch was appended, retry later",
                    retry_after=self._retry_after,
                    reason="client_share",
                )
            self._shares.take(client)
            pool = self._pool
        try:
            fut = pool.submit(self._run, events)
        except RuntimeError:
            self._release(client)
            raise Backpressure(
                "the audit service is stopping; retry later", retry_after=self._retry_after
            ) from None
        # Released when the batch is done, whichever way: also when it is cancelled while
        # still queued (a cancelled request task cancels it through asyncio.wrap_future),
        # when _run never runs and a release there would leak the place for good.
        fut.add_done_callback(lambda _: self._release(client))
        return fut

    def _release(self, client: str) -> None:
        with self._lock:
            self._shares.give_back(client)  # bounded: only clients with batches waiting

    def _run(self, events: Sequence[Any]) -> AppendResult:
        t0 = time.perf_counter()
        indexes = self._append(events)
        if self._on_appended is not None:
            self._on_appended(events, time.perf_counter() - t0)
        return AppendResult(indexes=tuple(indexes))
