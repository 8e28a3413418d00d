"""Benchmark: events per second through the audit service's HTTP intake.

The real service process (``python -m audit.service``, uvicorn, SQLite store in WAL
with synchronous=FULL) takes batches of ``--batch`` events (default 100) from
``--concurrency`` keep-alive connections; every batch is acknowledged only once
durable. The load generator runs in this process on the same machine (it competes
for the same cores), with request bodies prepared before the clock starts.

``http_events_per_s`` is also reported by ``benchmarks/audit.py``. Last line: one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.audit_service import ServiceProcess, make_audit_env, sample_event  # noqa: E402


def _bodies(n_events: int, batch: int) -> list[bytes]:
    out = []
    for b in range(n_events // batch):
        events = [
            sample_event(
                actor=f"researcher{(b * batch + i) % 500}@univ.example",
                enclave=("gut-microbiome-2026", "cohort-wgs", "mri-2027")[i % 3],
                details={"factor": "totp", "reason": "コードが違います"},
            ).to_dict()
            for i in range(batch)
        ]
        out.append(orjson.dumps({"events": events}))
    return out


async def _drive(url: str, token: str, bodies: list[bytes], concurrency: int) -> list[float]:
    """POST every body over ``concurrency`` keep-alive HTTP/1.1 connections.

    A deliberately minimal client (asyncio streams, requests prepared in advance) so
    that the generator, which shares the machine, takes as little CPU as it can."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(
            (
                f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(b)}\r\n\r\n"
            ).encode("ascii")
            + b
        )

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                try:
                    req = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                while True:
                    t0 = time.perf_counter()
                    writer.write(req)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length = 0
                    retry = 1.0
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.lower() == b"content-length":
                            length = int(v)
                        elif k.lower() == b"retry-after":
                            retry = float(v)
                    body = await reader.readexactly(length)
                    if status == 200:
                        latencies.append(time.perf_counter() - t0)
                        break
                    if status != 503:
                        raise RuntimeError(f"intake answered {status}: {body[:200]!r}")
                    await asyncio.sleep(retry)
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def bench_http_events_per_s(
    *, events: int = 100_000, batch: int = 100, concurrency: int = 8
) -> dict[str, Any]:
    """Start a real service, push ``events`` in batches of ``batch``; return the figures."""
    with tempfile.TemporaryDirectory(prefix="audit-http-bench-") as d:
        env = make_audit_env(Path(d))
        sp = ServiceProcess(env, checkpoint_interval=10.0)
        sp.start()
        try:
            warm = _bodies(2_000, batch)
            asyncio.run(_drive(sp.url, env.tokens["portal"], warm, concurrency))
            bodies = _bodies(events, batch)
            t0 = time.perf_counter()
            lat = asyncio.run(_drive(sp.url, env.tokens["portal"], bodies, concurrency))
            elapsed = time.perf_counter() - t0
        finally:
            sp.stop()
        lat.sort()
        n = len(bodies) * batch
        return {
            "http_events_per_s": round(n / elapsed),
            "http_batch_p50_ms": round(statistics.median(lat) * 1000, 2),
            "http_batch_p99_ms": round(lat[int(len(lat) * 0.99) - 1] * 1000, 2),
            "http_batch": batch,
            "http_concurrency": concurrency,
            "http_n": n,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    r = bench_http_events_per_s(events=a.events, batch=a.batch, concurrency=a.concurrency)
    print(json.dumps({"benchmark": "audit_http", **r, "n": r["http_n"], "unit": "events/s"}))


if __name__ == "__main__":
    main()
