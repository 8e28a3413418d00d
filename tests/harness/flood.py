"""One workspace token flooding a real audit service at its quota, while the portal
writes and an officer reads (issue #12's acceptance).

``run_flood`` first makes the flood reach its quota (it waits, with a deadline, for the
first 429), then runs a bounded number of portal writes and officer reads one after
the other, and stops the flood. It measures; it asserts nothing: the test asserts that
every portal write and officer read succeeded, the benchmark reports the figures.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from audit._events import utc_now

from .audit_service import sample_event

__all__ = ["FloodResult", "run_flood"]

ENCLAVE = "gut-microbiome-2026"


@dataclass(frozen=True)
class FloodResult:
    """Status codes seen by each party, and the portal's and officer's latencies (s)."""

    flood_statuses: dict[int, int]
    portal_statuses: dict[int, int]
    officer_statuses: dict[int, int]
    portal_seconds: tuple[float, ...]
    officer_seconds: tuple[float, ...]
    portal_event_ids: tuple[str, ...] = field(default=())


def _workspace_batch(n: int) -> dict[str, Any]:
    return {
        "events": [
            {
                "id": uuid.uuid4().hex,
                "time": utc_now(),
                "source": "workspace",
                "actor": "r.tanaka@company-a.example",
                "action": "workspace.file.get",
                "outcome": "success",
                "enclave": ENCLAVE,
                "client_ip": None,
                "details": {"path": "/data/microbiome-16s/sample.fastq"},
            }
            for _ in range(n)
        ]
    }


def run_flood(
    *,
    url: str,
    workspace_token: str,
    portal_token: str,
    officer_token: str,
    portal_batches: int = 100,
    portal_batch_size: int = 5,
    officer_reads: int = 50,
    flood_threads: int = 4,
    flood_batch_size: int = 50,
    max_flood_requests: int = 100_000,
    quota_deadline: float = 60.0,
) -> FloodResult:
    flood_codes: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    at_quota = threading.Event()

    def flood() -> None:
        with httpx.Client(timeout=30) as c:
            for _ in range(max_flood_requests // flood_threads):  # bounded
                if stop.is_set():
                    return
                try:
                    code = c.post(
                        url + "/v1/events",
                        json=_workspace_batch(flood_batch_size),
                        headers={"Authorization": f"Bearer {workspace_token}"},
                    ).status_code
                except httpx.HTTPError:
                    code = 0
                with lock:
                    flood_codes[code] += 1
                if code == 429:
                    at_quota.set()

    threads = [threading.Thread(target=flood, daemon=True) for _ in range(flood_threads)]
    for t in threads:
        t.start()
    portal_codes: Counter[int] = Counter()
    officer_codes: Counter[int] = Counter()
    portal_s: list[float] = []
    officer_s: list[float] = []
    ids: list[str] = []
    try:
        if not at_quota.wait(timeout=quota_deadline):
            raise RuntimeError(f"the flood did not reach its quota: {dict(flood_codes)}")
        with httpx.Client(timeout=30) as c:
            for i in range(max(portal_batches, officer_reads)):
                if i < portal_batches:
                    events = [sample_event().to_dict() for _ in range(portal_batch_size)]
                    ids.extend(e["id"] for e in events)
                    t0 = time.perf_counter()
                    r = c.post(
                        url + "/v1/events",
                        json={"events": events},
                        headers={"Authorization": f"Bearer {portal_token}"},
                    )
                    portal_s.append(time.perf_counter() - t0)
                    portal_codes[r.status_code] += 1
                if i < officer_reads:
                    t0 = time.perf_counter()
                    r = c.get(
                        url + "/v1/events",
                        params={"source": "portal", "limit": 20, "order": "desc"},
                        headers={"Authorization": f"Bearer {officer_token}"},
                    )
                    officer_s.append(time.perf_counter() - t0)
                    officer_codes[r.status_code] += 1
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    return FloodResult(
        flood_statuses=dict(flood_codes),
        portal_statuses=dict(portal_codes),
        officer_statuses=dict(officer_codes),
        portal_seconds=tuple(portal_s),
        officer_seconds=tuple(officer_s),
        portal_event_ids=tuple(ids),
    )
