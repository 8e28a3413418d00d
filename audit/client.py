"""How every other component writes audit events: ``AuditClient``.

Two modes, one interface:

- ``AuditClient.http(url=..., token=..., spool_path=...)``: events go to the audit
  service's intake API through a durable local spool (a SQLite file). The spool
  survives the service being down and this process restarting; a background sender
  drains it in order, in batches, and removes rows only once the service has
  acknowledged them. The service ignores event ids it already holds, so a batch
  re-sent after a lost acknowledgement is appended exactly once.
- ``AuditClient.local(store_url=...)``: the embedded default; events are appended
  straight into a local store (``sqlite:///...``) in this process (``emit`` batches
  them through a bounded queue; ``record`` appends at once, after what is queued).

Two ways to send, for two kinds of caller:

- ``record(event)`` is for security decisions that need their record (entering an
  enclave, approving an export). It returns only once the event is durable (fsynced
  in the spool, or appended to the local store) and raises ``RecordNotDurable``
  otherwise: the caller MUST then refuse the action (fail closed).
- ``emit(event)`` is fire-and-forget but still spooled: the event waits in a small
  bounded in-memory queue that a thread moves into the spool within
  ``flush_interval`` seconds. When the queue or the spool is full, ``emit`` blocks up
  to ``timeout`` seconds (back-pressure) and then raises ``AuditBackpressure``; it
  never grows memory without bound and never drops an event silently.

Events are validated when they are handed over (``EventError`` at once), so a bad
event never reaches the spool.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from ._actions import action_spec
from ._events import Event, parse_event
from ._spool import Spool
from .errors import AuditError, EventError

__all__ = [
    "AuditBackpressure",
    "AuditClient",
    "ClientError",
    "RecordNotDurable",
]

_log = logging.getLogger("audit.client")


class ClientError(AuditError):
    """Base of the client's own errors."""


class AuditBackpressure(ClientError):
    """The spool is full and stayed full for the whole timeout; the event was not taken."""


class RecordNotDurable(ClientError):
    """``record`` could not make the event durable: the caller must refuse the action."""


def _as_event(event: Event | Mapping[str, Any]) -> Event:
    return event if isinstance(event, Event) else parse_event(event)


class AuditClient(ABC):
    """See the module docstring. Make one with ``http(...)`` or ``local(...)``; use it as
    a context manager or call ``close()``."""

    @staticmethod
    def http(
        *,
        url: str,
        token: str,
        spool_path: Path,
        max_spool_events: int = 100_000,
        max_queue_events: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        request_timeout: float = 10.0,
        max_backoff: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        source: str | None = None,
    ) -> AuditClient:
        """A client of the audit service at ``url`` (e.g. ``http://127.0.0.1:8700``).

        ``token`` is this component's intake token (sent only in the Authorization
        header). ``batch_size`` is capped at the service's 1000. ``max_spool_events``
        bounds the spool file, ``max_queue_events`` the in-memory queue of ``emit``.
        ``source``: the one source this component's token may send; an event of
        another source is refused at hand-over (``EventError``), before the spool, as
        is an action its source may not send (the service would refuse it with 403).
        Without it, the service's refusal (403 wrong_source) is treated as a token
        misconfiguration: every event is kept and retried, never set aside."""
        return _HttpClient(
            url=url,
            token=token,
            spool_path=spool_path,
            max_spool_events=max_spool_events,
            max_queue_events=max_queue_events,
            batch_size=batch_size,
            flush_interval=flush_interval,
            request_timeout=request_timeout,
            max_backoff=max_backoff,
            transport=transport,
            source=source,
        )

    @staticmethod
    def local(*, store_url: str, signer_key_path: Path | None = None) -> AuditClient:
        """An in-process client appending straight into ``store_url`` (embedded mode)."""
        return _LocalClient(store_url=store_url, signer_key_path=signer_key_path)

    @abstractmethod
    def record(self, event: Event | Mapping[str, Any], *, timeout: float = 5.0) -> None:
        """Make ``event`` durable before returning; raise ``RecordNotDurable`` otherwise."""

    @abstractmethod
    def emit(self, event: Event | Mapping[str, Any], *, timeout: float = 30.0) -> None:
        """Hand ``event`` over; block up to ``timeout`` when full, then ``AuditBackpressure``."""

    def pending(self) -> int:
        """Events not yet acknowledged by the service (queued + spooled)."""
        return 0

    def flush(self, *, timeout: float = 30.0) -> bool:
        """Wait until every event handed over so far is acknowledged; False on timeout."""
        return True

    @property
    def last_error(self) -> str | None:
        """The most recent delivery problem (for health checks), or None."""
        return None

    def dead_letters(self) -> list[tuple[str, str]]:
        """``(event_id, reason)`` of events the service refused permanently."""
        return []

    @abstractmethod
    def close(self, *, flush_timeout: float = 5.0) -> None:
        """Release resources; an HTTP client first tries to deliver for ``flush_timeout``."""

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _LocalClient(AuditClient):
    """Embedded mode: ``record`` appends at once; ``emit`` batches through a bounded
    queue that one thread appends (one transaction per batch instead of per event)."""

    def __init__(
        self, *, store_url: str, signer_key_path: Path | None, max_queue_events: int = 10_000
    ) -> None:
        from .log import open_log

        self._log = open_log(store_url, signer_key_path=signer_key_path)
        self._closed = threading.Event()
        self._queue: queue.Queue[Event] = queue.Queue(maxsize=max_queue_events)
        self._order = threading.Lock()  # queued events are appended before a record
        # A batch whose append failed goes back here and is tried first next time:
        # an event taken by ``emit`` is never dropped by a failing store.
        self._retry: list[Event] = []
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._drain, name="audit-local", daemon=True)
        self._thread.start()

    def _append_queued(self, extra: Event | None = None) -> None:
        with self._order:
            batch: list[Event] = self._retry
            self._retry = []
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            queued = len(batch)
            if extra is not None:
                batch.append(extra)
            if not batch:
                return
            try:
                self._log.append(batch)
            except BaseException:
                self._retry = batch[:queued]  # the record (extra) is refused to its caller
                raise

    def _drain(self) -> None:
        while not self._closed.wait(0.02):
            if not self.pending():
                continue
            try:
                self._append_queued()
                self._last_error = None
            except AuditError as e:  # the events stay lost only if this keeps failing
                self._last_error = f"the audit store refused queued events: {e}"
                _log.error("%s", self._last_error)

    def record(self, event: Event | Mapping[str, Any], *, timeout: float = 5.0) -> None:
        ev = _as_event(event)
        if self._closed.is_set():
            raise RecordNotDurable("the audit client is closed")
        try:
            self._append_queued(extra=ev)
        except AuditError as e:
            raise RecordNotDurable(f"the audit store refused the record: {e}") from e

    def emit(self, event: Event | Mapping[str, Any], *, timeout: float = 30.0) -> None:
        ev = _as_event(event)
        if self._closed.is_set():
            raise ClientError("the audit client is closed")
        try:
            self._queue.put(ev, timeout=timeout)
        except queue.Full:
            raise AuditBackpressure(
                f"the audit queue stayed full for {timeout} s; the event was not taken"
            ) from None

    def pending(self) -> int:
        return self._queue.qsize() + len(self._retry)

    def flush(self, *, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            try:
                self._append_queued()
            except AuditError as e:
                self._last_error = f"the audit store refused queued events: {e}"
                self._closed.wait(0.1)
        return self.pending() == 0

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def close(self, *, flush_timeout: float = 5.0) -> None:
        if self._closed.is_set():
            return
        self.flush(timeout=flush_timeout)
        self._closed.set()
        self._thread.join(timeout=10)
        if self.pending():
            _log.error("audit client closed with %d events not appended", self.pending())
        self._log.close()


class _HttpClient(AuditClient):
    def __init__(
        self,
        *,
        url: str,
        token: str,
        spool_path: Path,
        max_spool_events: int,
        max_queue_events: int,
        batch_size: int,
        flush_interval: float,
        request_timeout: float,
        max_backoff: float,
        transport: httpx.BaseTransport | None,
        source: str | None = None,
    ) -> None:
        self._source = source
        self._spool = Spool(path=spool_path, max_events=max_spool_events)
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=max_queue_events)
        self._batch_max = max(1, min(batch_size, 1000))
        self._batch = self._batch_max
        self._flush_interval = flush_interval
        self._max_backoff = max_backoff
        self._backoff = 0.1  # current retry delay while the service is unreachable or busy
        self._url = url.rstrip("/") + "/v1/events"
        self._http = httpx.Client(
            timeout=request_timeout,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            transport=transport,
        )
        self._closed = threading.Event()
        self._wake_sender = threading.Event()
        self._space = threading.Condition()
        self._spool_lock = threading.Lock()
        self._last_error: str | None = None
        self._threads = [
            threading.Thread(target=self._spooler, name="audit-spooler", daemon=True),
            threading.Thread(target=self._sender, name="audit-sender", daemon=True),
        ]
        for t in self._threads:
            t.start()
        self._wake_sender.set()  # drain whatever an earlier run left in the spool

    # -- sending -------------------------------------------------------------------------------
    def _checked(self, event: Event | Mapping[str, Any]) -> Event:
        ev = _as_event(event)
        if self._source is not None and ev.source != self._source:
            raise EventError(
                f"this client sends {self._source!r} events; {ev.source!r} is another source",
                field="source",
            )
        spec = action_spec(ev.action)
        if spec is None or not spec.allows(ev.source):  # the service would refuse it (403)
            raise EventError(
                f"source {ev.source!r} may not send {ev.action!r} (audit._actions)",
                field="action",
            )
        return ev

    def record(self, event: Event | Mapping[str, Any], *, timeout: float = 5.0) -> None:
        """Make ``event`` durable before returning; raise ``RecordNotDurable`` otherwise."""
        ev = self._checked(event)
        if self._closed.is_set():
            raise RecordNotDurable("the audit client is closed")
        deadline = time.monotonic() + timeout
        row = (ev.id, ev.canonical())
        while True:
            try:
                if self._move_to_spool(extra=row):
                    self._wake_sender.set()
                    return
            except Exception as e:
                raise RecordNotDurable(f"the audit spool could not be written: {e}") from e
            if not self._wait_for_space(deadline):
                raise RecordNotDurable(
                    f"the audit spool is full ({self._spool.max_events} events) and the "
                    "audit service is not draining it"
                )

    def emit(self, event: Event | Mapping[str, Any], *, timeout: float = 30.0) -> None:
        """Queue ``event`` for the spool; block up to ``timeout`` when full (back-pressure)."""
        ev = self._checked(event)
        if self._closed.is_set():
            raise ClientError("the audit client is closed")
        try:
            self._queue.put((ev.id, ev.canonical()), timeout=timeout)
        except queue.Full:
            raise AuditBackpressure(
                f"the audit queue stayed full for {timeout} s; the event was not taken"
            ) from None

    def pending(self) -> int:
        """Events not yet acknowledged by the service (queued + spooled)."""
        return self._queue.qsize() + len(self._spool)

    def flush(self, *, timeout: float = 30.0) -> bool:
        """Wait until every event handed over so far is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._move_to_spool()
            if self.pending() == 0:
                return True
            self._wake_sender.set()
            with self._space:
                self._space.wait(timeout=0.05)
        return self.pending() == 0

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def dead_letters(self) -> list[tuple[str, str]]:
        """``(event_id, reason)`` of events the service refused permanently."""
        return self._spool.dead()

    def close(self, *, flush_timeout: float = 5.0) -> None:
        """Stop the threads (after trying to deliver for ``flush_timeout`` seconds).

        Whatever is still undelivered stays in the spool for the next start."""
        if self._closed.is_set():
            return
        self.flush(timeout=flush_timeout)
        self._move_to_spool()
        if not self._queue.empty():
            _log.error(
                "audit client closed with %d events that did not fit the full spool",
                self._queue.qsize(),
            )
        self._closed.set()
        self._wake_sender.set()
        for t in self._threads:
            t.join(timeout=10)
        self._http.close()
        self._spool.close()

    # -- threads -------------------------------------------------------------------------------
    def _move_to_spool(self, *, extra: tuple[str, bytes] | None = None) -> bool:
        """Queue -> spool in order (then ``extra``), in one transaction.

        Moves what fits; returns False when ``extra`` did not fit behind the queue."""
        with self._spool_lock:
            rows: list[tuple[str, bytes]] = []
            free = self._spool.free()
            while len(rows) < free:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            fits = extra is not None and len(rows) < free and self._queue.empty()
            if fits and extra is not None:
                rows.append(extra)
            if not self._spool.add(rows):  # pragma: no cover - free() checked under the lock
                raise ClientError("spool capacity changed underneath")
            return extra is None or fits

    def _wait_for_space(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            with self._space:
                self._space.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            if self._spool.free() > self._queue.qsize():
                return True
        return False

    def _spooler(self) -> None:
        while not self._closed.wait(self._flush_interval):
            if self._queue.empty():
                continue
            try:
                self._move_to_spool()
            except Exception as e:  # noqa: BLE001 (the thread must outlive a spool error)
                self._last_error = f"the spool cannot be written: {type(e).__name__}: {e}"
                _log.error("%s", self._last_error)
                self._closed.wait(self._max_backoff)
                continue
            self._wake_sender.set()

    def _sender(self) -> None:
        # One failing iteration (a spool I/O error, a lock timeout) must never end
        # delivery silently: report it, back off, and carry on.
        while not self._closed.is_set():
            try:
                self._send_once()
            except Exception as e:  # noqa: BLE001 (the thread must outlive any one failure)
                self._last_error = f"audit delivery failed: {type(e).__name__}: {e}"
                _log.error("%s", self._last_error)
                self._closed.wait(self._max_backoff)

    def _send_once(self) -> None:
        """Send the oldest spooled batch once and act on the answer."""
        rows = self._spool.head(self._batch)
        if not rows:
            self._wake_sender.wait(timeout=0.5)
            self._wake_sender.clear()
            return
        body = b'{"events":[' + b",".join(r.body for r in rows) + b"]}"
        try:
            resp = self._http.post(self._url, content=body)
        except httpx.HTTPError as e:
            self._last_error = f"audit service unreachable: {type(e).__name__}"
            self._closed.wait(self._backoff)
            self._backoff = min(self._max_backoff, self._backoff * 2)
            return
        if resp.status_code == 200:
            self._spool.ack(rows[-1].seq)
            self._batch = self._batch_max
            self._last_error = None
            self._backoff = 0.1
            with self._space:
                self._space.notify_all()
            return
        self._last_error = f"audit service answered {resp.status_code}: {resp.text[:300]}"
        if resp.status_code >= 500 or resp.status_code == 429:  # busy, or this token's quota
            self._closed.wait(_retry_after(resp, default=self._backoff))
            self._backoff = min(self._max_backoff, self._backoff * 2)
            return
        if resp.status_code in (400, 413, 422):
            # A permanent problem with one event: set it aside, keep the rest moving.
            index = _error_field(resp, "index")
            if isinstance(index, int) and 0 <= index < len(rows):
                _log.error(
                    "the audit service refused event %s permanently; kept in the dead table: %s",
                    rows[index].event_id,
                    resp.text[:300],
                )
                self._spool.bury(rows[index].seq, reason=resp.text)
                return
            if len(rows) > 1:
                self._batch = max(1, len(rows) // 2)  # find the bad one by halving
                return
            self._spool.bury(rows[0].seq, reason=resp.text)
            return
        # 401, 403 (a revoked token, or a token of another source: wrong_source) and
        # anything else: a configuration problem. Keep every event and retry slowly;
        # the spool fills, record() then fails closed, and an operator must fix the
        # token. Setting events aside here would lose security records silently.
        _log.error("audit intake refused: %s", self._last_error)
        self._closed.wait(self._max_backoff)


def _retry_after(resp: httpx.Response, *, default: float) -> float:
    value = resp.headers.get("retry-after", "")
    try:
        return max(0.05, min(60.0, float(value)))
    except ValueError:
        return default


def _error_field(resp: httpx.Response, name: str) -> object:
    """A field of the service's JSON error body, or None."""
    try:
        body = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None
    return body.get(name) if isinstance(body, dict) else None
