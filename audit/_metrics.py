"""Prometheus metrics of the audit log (names prefixed ``enclave_audit_``).

Registered once per process in the default registry; every :class:`~audit.log.AuditLog`
in the process reports into the same series.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "APPENDS",
    "APPEND_BATCHES",
    "APPEND_LATENCY",
    "BATCH_SIZE",
    "CHECKPOINTS",
    "INTAKE_REJECTIONS",
    "SECONDS_SINCE_CHECKPOINT",
    "TREE_SIZE",
    "VERIFICATIONS",
    "mark_checkpoint",
]

APPENDS = Counter("enclave_audit_appends", "Events durably appended to the audit log.")
APPEND_BATCHES = Counter(
    "enclave_audit_append_commits",
    "Group-commit transactions written (each holds one or more batches).",
)
BATCH_SIZE = Histogram(
    "enclave_audit_batch_size",
    "Events per append call.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
APPEND_LATENCY = Histogram(
    "enclave_audit_append_latency_seconds",
    "Time from an append call to its durable acknowledgement.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
TREE_SIZE = Gauge("enclave_audit_tree_size", "Entries integrated into the Merkle tree.")
CHECKPOINTS = Counter("enclave_audit_checkpoints", "Checkpoints signed.")
VERIFICATIONS = Counter(
    "enclave_audit_verifications", "Whole-log verifications by result.", ["result"]
)
INTAKE_REJECTIONS = Counter(
    "enclave_audit_intake_rejections", "Input refused before appending, by reason.", ["reason"]
)

_last_checkpoint: list[float] = []


def _since() -> float:
    return time.time() - _last_checkpoint[0] if _last_checkpoint else float("nan")


SECONDS_SINCE_CHECKPOINT = Gauge(
    "enclave_audit_seconds_since_last_checkpoint",
    "Seconds since this process last signed a checkpoint (NaN before the first).",
)
SECONDS_SINCE_CHECKPOINT.set_function(_since)


def mark_checkpoint() -> None:
    """Record that a checkpoint was just signed."""
    _last_checkpoint[:] = [time.time()]
    CHECKPOINTS.inc()
