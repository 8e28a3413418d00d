"""Prometheus metrics of the audit service (prefix ``enclave_audit_``).

The log's own series (appends, commit batch sizes, append latency, tree size, seconds
since the last checkpoint, verifications, intake rejections) live in the process-wide
registry of :mod:`audit._metrics`; the service adds its HTTP-side series in a registry
of its own (so several apps can live in one process) and ``/metrics`` serves both.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest

from .._metrics import INTAKE_REJECTIONS

__all__ = ["REJECTION_REASONS", "ServiceMetrics"]

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
)


@dataclass(frozen=True)
class ServiceMetrics:
    """The service's collectors, all registered in ``registry``."""

    registry: CollectorRegistry
    intake_batch_size: Histogram
    intake_events: Counter
    intake_latency: Histogram
    checkpoints_published: Counter
    officer_reads: Counter

    @classmethod
    def create(cls) -> ServiceMetrics:
        r = CollectorRegistry(auto_describe=True)
        for reason in REJECTION_REASONS:
            INTAKE_REJECTIONS.labels(reason=reason)
        return cls(
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
                "Checkpoints signed by the service, by trigger (interval, demand, verify).",
                ["trigger"],
                registry=r,
            ),
            officer_reads=Counter(
                "enclave_audit_officer_reads",
                "Officer reads, each also recorded in the log as audit.read, by view.",
                ["view"],
                registry=r,
            ),
        )

    @staticmethod
    def reject(reason: str) -> None:
        INTAKE_REJECTIONS.labels(reason=reason).inc()

    def exposition(self) -> bytes:
        """The text of ``/metrics``: the log's series, then the service's."""
        return generate_latest(REGISTRY) + generate_latest(self.registry)
