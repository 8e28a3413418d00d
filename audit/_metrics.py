"""Prometheus metrics of the audit log (``enclave_audit_*``, named by the shared convention).

Registered once per process in the default registry; every :class:`~audit.log.AuditLog`
in the process reports into the same series.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

from policies.telemetry import metric_name

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


def _n(name: str) -> str:
    return metric_name("audit", name)


APPENDS = Counter(_n("appends_total"), "Events durably appended to the audit log.")
APPEND_BATCHES = Counter(
    _n("append_commits_total"), "Group-commit transactions written (each holds one or more calls)."
)
BATCH_SIZE = Histogram(
    _n("batch_size_events"),
    "Events per append call.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
)
APPEND_LATENCY = Histogram(
    _n("append_latency_seconds"),
    "Time from an append call to its durable acknowledgement.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
TREE_SIZE = Gauge(_n("tree_size_entries"), "Entries integrated into the Merkle tree.")
CHECKPOINTS = Counter(_n("checkpoints_total"), "Checkpoints signed.")
VERIFICATIONS = Counter(_n("verifications_total"), "Whole-log verifications by result.", ["result"])
INTAKE_REJECTIONS = Counter(
    _n("intake_rejections_total"), "Input refused before appending, by reason.", ["reason"]
)

_last_checkpoint: list[float] = []


def _since() -> float:
    return time.time() - _last_checkpoint[0] if _last_checkpoint else float("nan")


SECONDS_SINCE_CHECKPOINT = Gauge(
    _n("last_checkpoint_age_seconds"),
    "Seconds since this process last signed a checkpoint (NaN before the first).",
)
SECONDS_SINCE_CHECKPOINT.set_function(_since)


def mark_checkpoint() -> None:
    """Record that a checkpoint was just signed."""
    _last_checkpoint[:] = [time.time()]
    CHECKPOINTS.inc()
