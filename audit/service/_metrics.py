"""Prometheus metrics of the audit service (prefix ``enclave_audit_``).

The log's own series (appends, commit batch sizes, append latency, tree size, seconds
since the last checkpoint, verifications, intake rejections) live in the process-wide
registry of :mod:`audit._metrics`; the service adds its HTTP-side series in a registry
of its own (so several apps can live in one process) and ``/metrics`` serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._metrics import INTAKE_REJECTIONS

__all__ = ["REJECTION_REASONS", "ServiceMetrics", "metrics_app"]

#: process-wide series left out of the service's exposition: they move only when an
#: officer acts (a verification started from the UI)
_OFFICER_SERIES = frozenset({"enclave_audit_verifications"})

#: why an intake request was refused: the ``reason`` label of
#: ``enclave_audit_intake_rejections_total`` (nothing of a refused batch is appended)
REJECTION_REASONS = (
    "unauthenticated",
    "wrong_source",
    "wrong_enclave",
    "malformed_json",
    "invalid_event",
    "too_many_events",
    "too_large",
    "backpressure",
    "client_share",
    "store_error",
    "quota_events",
    "quota_bytes",
    "busy",
    "disk_low",
)


@dataclass(frozen=True)
class ServiceMetrics:
    """The service's collectors, all registered in ``registry``."""

    registry: CollectorRegistry
    intake_batch_size: Histogram
    intake_events: Counter
    intake_latency: Histogram
    checkpoints_published: Counter
    intake_bytes: Counter
    store_free_bytes: Gauge
    scheduled_verifications: Counter
    last_scheduled_verification_ok: Gauge
    last_scheduled_verification_time: Gauge

    @classmethod
    def create(cls) -> ServiceMetrics:
        r = CollectorRegistry(auto_describe=True)
        for reason in REJECTION_REASONS:
            INTAKE_REJECTIONS.labels(reason=reason)
        m = cls(
            registry=r,
            intake_batch_size=Histogram(
                "enclave_audit_intake_batch_size",
                "Events per accepted intake request.",
                buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
                registry=r,
            ),
            intake_events=Counter(
                "enclave_audit_intake_events",
                "Events accepted through the intake API (appended or already held), by source.",
                ["source"],
                registry=r,
            ),
            intake_latency=Histogram(
                "enclave_audit_intake_append_latency_seconds",
                "Time from a validated intake batch to its durable indexes (queue + append).",
                buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=r,
            ),
            checkpoints_published=Counter(
                "enclave_audit_checkpoints_published",
                "Checkpoints signed by the service on its own, by trigger (interval, "
                "shutdown); those an officer asked for are recorded in the log instead.",
                ["trigger"],
                registry=r,
            ),
            intake_bytes=Counter(
                "enclave_audit_intake_bytes",
                "Bytes of accepted intake request bodies, by source.",
                ["source"],
                registry=r,
            ),
            store_free_bytes=Gauge(
                "enclave_audit_store_free_bytes",
                "Bytes free on the SQLite store's file system (intake keeps only the portal "
                "and the controller below --min-free-mb); NaN for PostgreSQL.",
                registry=r,
            ),
            scheduled_verifications=Counter(
                "enclave_audit_scheduled_verifications",
                "Whole-log verifications the service ran on its schedule (--verify-interval), "
                'by result; alert on any result="failed".',
                ["result"],
                registry=r,
            ),
            last_scheduled_verification_ok=Gauge(
                "enclave_audit_last_scheduled_verification_ok",
                "1 if the last scheduled verification found the log intact, 0 if not; NaN "
                "before the first.",
                registry=r,
            ),
            last_scheduled_verification_time=Gauge(
                "enclave_audit_last_scheduled_verification_timestamp_seconds",
                "When the last scheduled verification finished (Unix time; 0 before the first).",
                registry=r,
            ),
        )
        for result in ("ok", "failed"):
            m.scheduled_verifications.labels(result=result)
        m.last_scheduled_verification_ok.set(float("nan"))
        return m

    @staticmethod
    def reject(reason: str) -> None:
        INTAKE_REJECTIONS.labels(reason=reason).inc()

    def watch_free_space(self, free_bytes: Callable[[], int | None]) -> None:
        def read() -> float:
            free = free_bytes()
            return float("nan") if free is None else float(free)

        self.store_free_bytes.set_function(read)

    def exposition(self) -> bytes:
        """The text of ``/metrics``: the log's series (but those that show officers at
        work), then the service's."""
        return generate_latest(_WithoutOfficerSeries()) + generate_latest(self.registry)


class _WithoutOfficerSeries:
    """The process-wide registry minus ``_OFFICER_SERIES``."""

    def collect(self) -> Iterator[Metric]:
        for family in REGISTRY.collect():
            if family.name not in _OFFICER_SERIES:
                yield family


def metrics_app(metrics: ServiceMetrics) -> Starlette:
    """``GET /metrics`` alone, for the listener of its own."""

    async def endpoint(request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
