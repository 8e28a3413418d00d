"""Shared state of one service instance: the log, credentials, writer, publisher."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from policies import IPNetwork, parse_proxies

from ..files import write_atomic
from ..tokens import TokenStore
from ._core import officer_read_event
from ._errors import Backpressure
from ._metrics import ServiceMetrics
from ._officer import Officer, Officers
from ._oidc import OidcLogin
from ._quota import BodySlots, FreeSpaceFloor, TokenQuotas, store_directory
from ._writer import AppendResult, Writer

__all__ = ["ServiceSettings", "ServiceState"]

logger = logging.getLogger("audit.service")

T = TypeVar("T")

#: checkpoint triggers counted in /metrics: the service's own schedule, never an officer
_UNATTENDED_TRIGGERS = frozenset({"interval", "shutdown"})


@dataclass(frozen=True)
class ServiceSettings:
    """Every knob of the service, documented where it is defined."""

    #: most events in one intake request (issue 3: up to 1000)
    max_batch_events: int = 1000
    #: most bytes in one intake body (4 MiB: a thousand ordinary events, or 63 of the
    #: largest, 64 KiB each; a client answered 413 sends smaller batches)
    max_body_bytes: int = 4 * 1024 * 1024
    #: request bodies read and parsed at once, in all (so at most this many times
    #: ``max_body_bytes`` of bodies are in memory); beyond it intake answers 503
    max_concurrent_bodies: int = 32
    #: of those, most for one intake token (None: a quarter)
    max_concurrent_bodies_per_token: int | None = None
    #: events one intake token may append per minute (a bucket refilled at this rate,
    #: holding one minute's worth); beyond it intake answers 429 + Retry-After
    token_events_per_minute: int = 60_000
    #: bytes of request bodies one intake token may send per minute (same rule): at its
    #: quota a token adds at most this much a minute to an append-only store
    token_bytes_per_minute: int = 64 * 1024 * 1024
    #: below this many bytes free on the store's file system intake refuses every
    #: source but the portal and the controller (503), so that logins and entries keep
    #: being recorded while space is made (0: no floor)
    min_free_bytes: int = 1024 * 1024 * 1024
    #: where free space is measured (None: the SQLite store's directory; a PostgreSQL
    #: store's disk is the database server's, watch it there)
    free_space_path: Path | None = None
    #: whole-log verifications one officer may have running at once; and in all
    max_verify_jobs_per_officer: int = 1
    max_verify_jobs: int = 2
    #: batches that may wait for the writer; beyond it intake answers 503 + Retry-After
    max_pending_batches: int = 256
    #: of those, most from one intake token (None: a quarter); beyond it that token is
    #: answered 503 + Retry-After while the others still get in
    max_pending_batches_per_token: int | None = None
    #: seconds a refused client should wait (the Retry-After header)
    retry_after_seconds: int = 1
    #: how often new entries are integrated into the tree (seconds)
    integrate_interval_seconds: float = 0.5
    #: how often a checkpoint is signed when the tree grew (seconds; 0 = only on demand)
    checkpoint_interval_seconds: float = 60.0
    #: where each new checkpoint is also written (atomically), for witnesses to pick up
    checkpoint_export_path: Path | None = None
    #: how often the service verifies the whole log on its own (seconds; 0 = never): the
    #: result is recorded and exported as ``enclave_audit_scheduled_verifications_total``
    #: for alerting; the first run is one interval after start
    verify_interval_seconds: float = 0.0
    #: set the cookie Secure flag (keep True; browsers accept it on http://localhost)
    secure_cookies: bool = True
    #: officer session limits (TIERS.md: 15 min idle, 12 h overall)
    session_idle_seconds: float = 15 * 60
    session_max_seconds: float = 12 * 3600
    #: how often refused intake requests are summarised into the log as
    #: ``audit.intake.rejected`` events, one per (reason, client address) (seconds)
    rejection_report_interval_seconds: float = 60.0
    #: failed officer logins within ``login_window_seconds`` that lock the login form
    max_login_failures: int = 10
    login_window_seconds: float = 60.0
    #: page size of the read API when the caller gives none, and its maximum
    default_page: int = 100
    max_page: int = 1000
    #: networks of reverse proxies whose X-Forwarded-For is believed (CIDRs); without
    #: them the TCP peer is the client address recorded and throttled
    trusted_proxies: tuple[str, ...] = ()


@dataclass
class VerifyJob:
    """A whole-log verification started from the UI; polled for progress."""

    id: str
    started: float
    total: int
    done: int = 0
    finished: float | None = None
    ok: bool | None = None
    message: str = ""
    officer: str = ""


@dataclass
class ServiceState:
    log: Any
    tokens: TokenStore
    officers: Officers
    settings: ServiceSettings
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics.create)
    writer: Writer = field(init=False)
    last_checkpoint: float | None = None
    last_checkpoint_size: int = -1
    verify_jobs: dict[str, VerifyJob] = field(default_factory=dict)
    verify_lock: threading.Lock = field(default_factory=threading.Lock)
    #: officer sign-in through the portal's OIDC provider (None: bootstrap token only)
    oidc: OidcLogin | None = None
    #: refused intake requests not yet written to the log: (reason, ip) -> count
    rejections: dict[tuple[str, str | None], int] = field(default_factory=dict)
    rejections_lock: threading.Lock = field(default_factory=threading.Lock)
    proxies: tuple[IPNetwork, ...] = field(init=False)
    quotas: TokenQuotas = field(init=False)
    bodies: BodySlots = field(init=False)
    floor: FreeSpaceFloor = field(init=False)

    def __post_init__(self) -> None:
        self.proxies = parse_proxies(self.settings.trusted_proxies)
        s = self.settings
        self.quotas = TokenQuotas(
            events_per_minute=s.token_events_per_minute, bytes_per_minute=s.token_bytes_per_minute
        )
        self.bodies = BodySlots(
            total=s.max_concurrent_bodies,
            per_token=s.max_concurrent_bodies_per_token,
            retry_after=s.retry_after_seconds,
        )
        self.floor = FreeSpaceFloor(
            path=s.free_space_path or store_directory(getattr(self.log, "store", None)),
            min_free_bytes=s.min_free_bytes,
            retry_after=s.retry_after_seconds,
        )
        self.metrics.watch_free_space(self.floor.free_bytes)
        self.writer = Writer(
            append=self.log.append,
            max_pending=self.settings.max_pending_batches,
            max_pending_per_client=self.settings.max_pending_batches_per_token,
            retry_after=self.settings.retry_after_seconds,
            on_appended=self._observe,
        )

    # -- log access (AuditLog is thread-safe; blocking calls run in worker threads) -----

    def _observe(self, events: Sequence[Any], seconds: float) -> None:
        self.metrics.intake_latency.observe(seconds)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def append(self, events: Sequence[Any], *, client: str) -> AppendResult:
        """Durable indexes of ``events`` sent by ``client`` (an intake token's id); store
        trouble becomes ``Backpressure`` (503)."""
        from ..errors import EventError, StoreError, TemporaryError

        fut = self.writer.submit(events, client=client)
        try:
            return await asyncio.wrap_future(fut)
        except EventError:
            raise
        except TemporaryError as e:
            raise Backpressure(
                f"the audit store is busy ({e}); nothing of the batch was appended, retry later",
                retry_after=max(1, math.ceil(e.delay)),
                reason="store_error",
            ) from e
        except StoreError as e:
            raise Backpressure(
                f"the audit store failed ({e}); nothing of the batch was appended, retry later",
                retry_after=self.settings.retry_after_seconds,
                reason="store_error",
            ) from e

    async def record_read(
        self,
        officer: Officer,
        *,
        view: str,
        query: dict[str, Any],
        client_ip: str | None,
        results: int | None = None,
        fmt: str | None = None,
    ) -> None:
        """Append "officer X looked at Y" durably before the read is answered.

        Fails closed: when the event cannot be made durable the read is refused."""
        from .._events import parse_event

        event = parse_event(
            officer_read_event(
                officer_id=officer.id,
                view=view,
                query=query,
                results=results,
                client_ip=client_ip,
                fmt=fmt,
            )
        )
        # its own share, not an intake token's; deliberately not counted in /metrics,
        # which must not show when officers are looking (issue #12, item 5)
        await self.append([event], client="(service)")

    async def record_published(self, cp: Any, *, officer: Officer, client_ip: str | None) -> None:
        """Record that ``officer`` had checkpoint ``cp`` signed (``audit.checkpoint.published``,
        issue #12, item 10), before the answer; fails closed with 503 like every record."""
        from .._events import Event

        details: dict[str, Any] = {"size": int(cp.size)}
        if self.settings.checkpoint_export_path is not None:
            details["destination"] = str(self.settings.checkpoint_export_path)[:1024]
        event = Event.new(
            source="audit",
            actor=officer.id,
            action="audit.checkpoint.published",
            outcome="success",
            client_ip=client_ip,
            details=details,
        )
        await self.append([event], client="(ui)")

    # -- refused intake, summarised ----------------------------------------------------
    _MAX_REJECTION_KEYS = 256

    def note_rejection(self, reason: str, ip: str | None) -> None:
        """Count a refused request; ``report_rejections_sync`` writes the summary.

        Refusals are summarised rather than logged one by one, so that nobody can
        flood the log by sending bad requests; distinct addresses beyond a bound
        are counted without their address."""
        with self.rejections_lock:
            key = (reason, ip)
            if key not in self.rejections and len(self.rejections) >= self._MAX_REJECTION_KEYS:
                key = (reason, None)
            self.rejections[key] = self.rejections.get(key, 0) + 1

    def report_rejections_sync(self) -> int:
        """Append one ``audit.intake.rejected`` per (reason, address) counted so far."""
        from .._events import Event

        with self.rejections_lock:
            counts, self.rejections = self.rejections, {}
        if not counts:
            return 0
        events = [
            Event.new(
                source="audit",
                actor="audit-service",
                action="audit.intake.rejected",
                outcome="denied",
                client_ip=ip,
                details={"reason": reason, "count": n},
            )
            for (reason, ip), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
        ]
        try:
            self.log.append(events)
        except Exception:
            with self.rejections_lock:  # keep the counts for the next attempt
                for k, n in counts.items():
                    self.rejections[k] = self.rejections.get(k, 0) + n
            raise
        return len(events)

    # -- integration and publication -----------------------------------------------
    def publish_now(self, *, trigger: str) -> Any:
        """Integrate and return a signed checkpoint covering every entry so far."""
        cp = self.integrate_and_publish(trigger=trigger, force=True)
        assert cp is not None
        return cp

    def integrate_and_publish(self, *, trigger: str, force: bool = False) -> Any | None:
        """Integrate pending entries; sign a checkpoint when the tree grew (or force)."""
        self.log.integrate()
        size = int(self.log.size())
        if not force and size == self.last_checkpoint_size:
            return None
        cp = self.log.checkpoint()
        self.last_checkpoint = time.time()
        self.last_checkpoint_size = int(cp.size)
        if trigger in _UNATTENDED_TRIGGERS:  # not the ones an officer asked for (item 5)
            self.metrics.checkpoints_published.labels(trigger=trigger).inc()
        if self.settings.checkpoint_export_path is not None:
            write_atomic(self.settings.checkpoint_export_path, cp.text.encode("utf-8"))
        return cp

    def _scheduled_verify(self) -> None:
        from ._verify_jobs import run_scheduled_verify  # it builds on this module

        try:
            run_scheduled_verify(self)
        except Exception:
            # not recorded, so not run: the next interval tries again; an operator sees
            # the timestamp metric stop moving
            logger.exception("scheduled verification could not start")

    async def publisher(self) -> None:
        """Integrate every ``integrate_interval``; publish every ``checkpoint_interval``."""
        s = self.settings
        next_cp = time.monotonic() + s.checkpoint_interval_seconds
        next_rej = time.monotonic() + s.rejection_report_interval_seconds
        next_verify = time.monotonic() + s.verify_interval_seconds
        while True:
            await asyncio.sleep(s.integrate_interval_seconds)
            if s.verify_interval_seconds > 0 and time.monotonic() >= next_verify:
                next_verify = time.monotonic() + s.verify_interval_seconds
                # its own thread: a verification takes seconds to minutes, and intake,
                # integration and checkpoints must go on meanwhile
                threading.Thread(target=self._scheduled_verify, daemon=True).start()
            due = s.checkpoint_interval_seconds > 0 and time.monotonic() >= next_cp
            try:
                if due:
                    await anyio.to_thread.run_sync(
                        lambda: self.integrate_and_publish(trigger="interval")
                    )
                    next_cp = time.monotonic() + s.checkpoint_interval_seconds
                else:
                    await self.call(self.log.integrate)
                if time.monotonic() >= next_rej:
                    next_rej = time.monotonic() + s.rejection_report_interval_seconds
                    await anyio.to_thread.run_sync(self.report_rejections_sync)
            except Exception:
                # the loop must outlive a failing store: logged with its traceback, and
                # tried again at the next tick (nothing acknowledged is lost meanwhile)
                logger.exception("integration failed")
