"""The service's single writer: validated batches in, durable indexes out.

Intake handlers hand a validated batch to ``Writer.submit`` and wait for its future.
One thread takes every batch waiting at that moment and appends them with one call
to ``AuditLog.append`` (group commit: one transaction, one fsync for many requests).
A batch is acknowledged only when that call has returned, i.e. once durable.

The queue is bounded: when ``max_pending`` batches wait, ``submit`` refuses at once
and the handler answers 503 with Retry-After, so memory stays bounded and nothing
that was acknowledged can be lost.

Idempotence: events whose ``id`` the log already holds (a client re-sending after a
lost acknowledgement) are not appended again; their existing index is returned.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ._errors import Backpressure

__all__ = ["AppendResult", "Writer"]


@dataclass(frozen=True)
class AppendResult:
    """Indexes of a batch, in its order; ``duplicates`` counts events already logged."""

    indexes: tuple[int, ...]
    duplicates: int


_Item = tuple[Sequence[Any], "Future[AppendResult]"]


class Writer:
    """Owns every write to the log on one thread; see the module docstring."""

    def __init__(
        self,
        *,
        append: Callable[[Sequence[Any]], list[int]],
        lookup_ids: Callable[[Sequence[str]], dict[str, int]],
        max_pending: int = 64,
        max_group_events: int = 5000,
        retry_after: int = 1,
        on_appended: Callable[[Sequence[Any], float], None] | None = None,
    ) -> None:
        self._append = append
        self._lookup = lookup_ids
        self._q: queue.Queue[_Item | None] = queue.Queue(maxsize=max_pending)
        self._max_group = max_group_events
        self._retry_after = retry_after
        self._on_appended = on_appended
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def stop(self) -> None:
        if self._started:
            self._q.put(None)
            self._thread.join(timeout=30)
            self._started = False

    def submit(self, events: Sequence[Any]) -> Future[AppendResult]:
        fut: Future[AppendResult] = Future()
        try:
            self._q.put_nowait((events, fut))
        except queue.Full:
            raise Backpressure(
                "the audit service is at capacity; nothing of this batch was appended, retry later",
                retry_after=self._retry_after,
            ) from None
        return fut

    # -- the writer thread ----------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            group: list[_Item] = [item]
            n = len(item[0])
            stop = False
            while n < self._max_group:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                group.append(nxt)
                n += len(nxt[0])
            self._commit(group)
            if stop:
                return

    def _commit(self, group: list[_Item]) -> None:
        t0 = time.perf_counter()
        try:
            ids = [e.id for events, _ in group for e in events]
            known = self._lookup(ids)
            fresh: list[Any] = []
            seen: dict[str, int] = {}  # id -> position in fresh (duplicates inside the group)
            for events, _ in group:
                for e in events:
                    if e.id in known or e.id in seen:
                        continue
                    seen[e.id] = len(fresh)
                    fresh.append(e)
            new_indexes = self._append(fresh) if fresh else []
        except Exception as e:  # noqa: BLE001  (any store failure: refuse the whole group)
            err = Backpressure(
                f"the audit store could not append the batch ({type(e).__name__}); "
                "nothing of it was appended, retry later",
                retry_after=self._retry_after,
                reason="store_error",
            )
            for _, fut in group:
                fut.set_exception(err)
            return
        elapsed = time.perf_counter() - t0
        if self._on_appended is not None:
            self._on_appended(fresh, elapsed)
        for events, fut in group:
            out: list[int] = []
            dup = 0
            for e in events:
                if e.id in known:
                    out.append(known[e.id])
                    dup += 1
                else:
                    out.append(new_indexes[seen[e.id]])
            fut.set_result(AppendResult(indexes=tuple(out), duplicates=dup))
