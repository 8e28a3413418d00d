"""Benchmark: the portal's writes and an officer's reads while one workspace token
floods the audit service at its quota (issue #12's acceptance).

Run with `make bench`, or `.venv/bin/python -P benchmarks/intake_flood.py`.

A real ``enclave audit serve`` process on loopback (SQLite store, the default limits
but ``--token-events-per-minute``: 6,000 here, for every token, so that the flood
reaches it within a second while the portal's 1,000 events stay below it); four
threads send 50-event workspace batches as fast as they are answered; once the flood
has been refused with 429, the portal sends 200 batches of 5 events and an officer
makes 200 reads, one after the other. Reported: how many of each succeeded, their
latencies (p50/p99, ms), and what the flood was answered. Last line: one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from audit.tokens import TokenStore  # noqa: E402
from tests.harness.audit_service import ServiceProcess, make_audit_env  # noqa: E402
from tests.harness.flood import ENCLAVE, run_flood  # noqa: E402

N_PORTAL = 200
N_OFFICER = 200
QUOTA = 6000


def pct(xs: tuple[float, ...], p: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000, 2)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = make_audit_env(Path(tmp) / "audit")
        workspace = TokenStore(path=env.tokens_path).issue(
            source="workspace", label="bench", enclave=ENCLAVE
        )
        t0 = time.perf_counter()
        with ServiceProcess(env, extra_args=("--token-events-per-minute", str(QUOTA))) as svc:
            r = run_flood(
                url=svc.url,
                workspace_token=workspace.token,
                portal_token=env.tokens["portal"],
                officer_token=env.officer_token,
                portal_batches=N_PORTAL,
                officer_reads=N_OFFICER,
            )
        wall = time.perf_counter() - t0
    out = {
        "benchmark": "intake_flood",
        "token_quota_events_per_minute": QUOTA,
        "portal_writes_ok": r.portal_statuses.get(200, 0),
        "portal_writes_failed": sum(n for c, n in r.portal_statuses.items() if c != 200),
        "officer_reads_ok": r.officer_statuses.get(200, 0),
        "officer_reads_failed": sum(n for c, n in r.officer_statuses.items() if c != 200),
        "portal_write_p50_ms": pct(r.portal_seconds, 50),
        "portal_write_p99_ms": pct(r.portal_seconds, 99),
        "officer_read_p50_ms": pct(r.officer_seconds, 50),
        "officer_read_p99_ms": pct(r.officer_seconds, 99),
        "flood_accepted": r.flood_statuses.get(200, 0),
        "flood_refused_429": r.flood_statuses.get(429, 0),
        "flood_refused_503": r.flood_statuses.get(503, 0),
        "flood_other": sum(n for c, n in r.flood_statuses.items() if c not in (200, 429, 503)),
        "portal_statuses": {str(c): n for c, n in sorted(r.portal_statuses.items())},
        "officer_statuses": {str(c): n for c, n in sorted(r.officer_statuses.items())},
        "wall_seconds": round(wall, 1),
        "n": N_PORTAL + N_OFFICER,
        "unit": "ms",
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
