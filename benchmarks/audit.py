"""Audit log benchmarks: append, integrate, verify, proofs and queries on 1M-entry logs.

Run: ``.venv/bin/python benchmarks/audit.py [--n 1000000] [--only NAME ...]``.
Each section is a function in ``SECTIONS`` returning a dict of metrics; the last line
printed is one JSON object with every section's metrics merged (the shape DESIGN.md
fixes). Add a section by writing ``def bench_x(ctx) -> dict`` and listing it.

What is measured:

- ``append_events_per_s``: SQLite (WAL, ``synchronous=FULL``: every commit fsynced),
  in process, batches of 1,000 ready-made :class:`Event` objects, each call returning
  only once durable. Canonical JSON, leaf hashing and the lookup columns are included;
  building the Event objects (validation) is measured separately as
  ``event_validate_per_s``.
- ``integrate_events_per_s``: building the tree (tiles, tree heads) and the officers'
  query index over those entries (a separate step that may lag the appends).
- ``verify_events_per_s``: ``verify_store`` over the whole log (every hash, column,
  query-index row, tile, head and checkpoint) with its default number of workers;
  ``verify_1_worker_...`` / ``verify_2_workers_...`` with one and two processes; each
  with the 1-minute load average when it started (``..._load1``): other work on the
  machine shares its cores. ``--log DIR --only verify`` reuses a log built once.
  ``verify_compiled`` says whether the compiled fast path (``audit._speedups``) ran.
- ``proof_p99_ms``: inclusion proof for a random index at the full size (tile reads).
- ``query_p99_ms``: one actor over one day, first page of 100.
- ``pg_append_events_per_s`` / ``pg_verify_events_per_s``: the same on PostgreSQL
  (a disposable server from the test harness, fsync on, ``synchronous_commit=on``).
  Before verify the database is vacuumed (``pg_vacuum_s``): else the autovacuum that
  a million fresh rows start shares the two cores with the verify being timed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audit import AuditLog, Event, Query, open_log, verify_store
from audit._note import generate_key, write_key_file

ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("auth.factor.verified", {"factor": "webauthn", "category": "possession", "aal": 3}),
    (
        "session.started",
        {"tier": "nbdc-high", "factors": ["password", "webauthn"], "session_id": "s-1"},
    ),
    ("workspace.file.get", {"path": "/data/cohort/chr1.vcf.gz", "bytes": 1048576}),
    ("workspace.file.put", {"path": "/home/jovyan/results/table_3.csv", "bytes": 20480}),
    ("auth.factor.failed", {"factor": "totp", "reason": "code mismatch", "failures_in_window": 1}),
]
DAY_NS = 86_400


def make_events(start: int, count: int) -> list[Event]:
    out = []
    for i in range(start, start + count):
        action, details = ACTIONS[i % len(ACTIONS)]
        t = 1_764_000_000 + (i * 2_592_000) // 1_000_000  # spread over 30 days per million
        out.append(
            Event(
                id=f"bench-{i:08d}",
                time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
                source="portal" if i % 3 else "workspace",
                actor=f"researcher{i * 7919 % 1000:04d}@example.jp",
                action=action,
                enclave=f"proj-{i % 40:02d}",
                outcome="failure" if action == "auth.factor.failed" else "success",
                client_ip=f"10.{i % 200}.{i % 250}.{i % 253 + 1}",
                details=details,
            )
        )
    return out


class Ctx:
    def __init__(self, n: int, batch: int, keep: Path | None = None) -> None:
        self.n = n
        self.batch = batch
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
        self.tmp = keep or Path(tempfile.mkdtemp(prefix="enclave-bench-"))
        self.key = self.tmp / "key"
        if not self.key.exists():
            write_key_file(self.key, generate_key("bench.enclave/audit"))
        self.sqlite_url = f"sqlite://{self.tmp}/audit.db"
        self.log: AuditLog | None = None


def _append_all(log: AuditLog, ctx: Ctx) -> float:
    elapsed = 0.0
    chunk = 50_000
    for start in range(0, ctx.n, chunk):
        evs = make_events(start, min(chunk, ctx.n - start))  # built outside the timing
        t0 = time.perf_counter()
        for i in range(0, len(evs), ctx.batch):
            log.append(evs[i : i + ctx.batch])
        elapsed += time.perf_counter() - t0
    return elapsed


def bench_validate(ctx: Ctx) -> dict[str, Any]:
    t0 = time.perf_counter()
    make_events(0, 100_000)
    return {"event_validate_per_s": round(100_000 / (time.perf_counter() - t0))}


def bench_sqlite(ctx: Ctx) -> dict[str, Any]:
    log = open_log(ctx.sqlite_url, signer_key_path=ctx.key)
    ctx.log = log
    t = _append_all(log, ctx)
    out: dict[str, Any] = {"append_events_per_s": round(ctx.n / t)}
    t0 = time.perf_counter()
    log.integrate()
    out["integrate_events_per_s"] = round(ctx.n / (time.perf_counter() - t0))
    log.checkpoint()
    out["sqlite_db_bytes"] = os.path.getsize(ctx.tmp / "audit.db")
    return out


def _verify_compiled() -> bool:
    """Whether verify ran its compiled fast path (``audit._speedups``), not Python only."""
    from audit import _verify_scan

    return _verify_scan.compiled()


def bench_verify(ctx: Ctx) -> dict[str, Any]:
    """Verify the SQLite log of the ``sqlite`` section, or the one kept with ``--log``
    (built here, durably, if that directory has none yet)."""
    log = ctx.log or open_log(ctx.sqlite_url, signer_key_path=ctx.key)
    ctx.log = log
    if log.sequenced() == 0:
        _append_all(log, ctx)
    log.integrate()
    log.checkpoint()
    n = log.sequenced()
    out: dict[str, Any] = {"verify_log_entries": n, "verify_compiled": _verify_compiled()}
    for key, workers in (
        ("verify_events_per_s", None),
        ("verify_1_worker_events_per_s", 1),
        ("verify_2_workers_events_per_s", 2),
    ):
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        report = (
            verify_store(log.store) if workers is None else verify_store(log.store, workers=workers)
        )
        out[key] = round(n / (time.perf_counter() - t0))
        out[key.replace("_events_per_s", "_load1")] = round(load, 2)
        assert report.ok, report.problems
    return out


def _p99(samples: list[float]) -> float:
    return round(statistics.quantiles(samples, n=100)[98] * 1000, 3)


def bench_proofs(ctx: Ctx) -> dict[str, Any]:
    log = ctx.log or open_log(ctx.sqlite_url)
    rng = random.Random(7)
    size = log.size()
    samples = []
    for _ in range(2000):
        i = rng.randrange(size)
        t0 = time.perf_counter()
        log.inclusion_proof(i, size)
        samples.append(time.perf_counter() - t0)
    cons = []
    for _ in range(500):
        old = rng.randrange(1, size)
        t0 = time.perf_counter()
        log.consistency_proof(old, size)
        cons.append(time.perf_counter() - t0)
    return {
        "proof_p99_ms": _p99(samples),
        "proof_p50_ms": round(statistics.median(samples) * 1000, 3),
        "consistency_proof_p99_ms": _p99(cons),
    }


def bench_query(ctx: Ctx) -> dict[str, Any]:
    log = ctx.log or open_log(ctx.sqlite_url)
    rng = random.Random(11)
    samples = []
    rows = 0
    for _ in range(300):
        actor = f"researcher{rng.randrange(1000):04d}@example.jp"
        day = rng.randrange(28)
        since = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(1_764_000_000 + day * DAY_NS))
        until = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(1_764_000_000 + (day + 1) * DAY_NS))
        t0 = time.perf_counter()
        page, _ = log.query(Query(actor=actor, since=since, until=until), limit=100)
        samples.append(time.perf_counter() - t0)
        rows += len(page)
    return {"query_p99_ms": _p99(samples), "query_mean_rows": round(rows / len(samples), 1)}


def bench_postgres(ctx: Ctx) -> dict[str, Any]:
    from audit._store_postgres import PostgresStore
    from tests.harness.postgres import PostgresServer

    with PostgresServer(fsync=True) as server:
        db = server.create_database()
        st = PostgresStore(db.admin_url)
        st.migrate(writer=db.writer_role)
        st.close()
        log = open_log(db.writer_url, signer_key_path=ctx.key)
        t = _append_all(log, ctx)
        out: dict[str, Any] = {"pg_append_events_per_s": round(ctx.n / t)}
        t0 = time.perf_counter()
        log.integrate()
        out["pg_integrate_events_per_s"] = round(ctx.n / (time.perf_counter() - t0))
        log.checkpoint()
        # Autovacuum starts on the million rows just written and runs for seconds: vacuum
        # now, as pgbench does before it measures, so that verify is not timed alongside.
        t0 = time.perf_counter()
        server.psql("VACUUM (ANALYZE)", db=db.name)
        out["pg_vacuum_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        report = verify_store(log.store)
        out["pg_verify_events_per_s"] = round(ctx.n / (time.perf_counter() - t0))
        assert report.ok, report.problems
        log.close()
    return out


# ==== http_events_per_s: the audit service's intake API =================================
# (section owned by the audit service; the load generator is kept minimal so that it,
# sharing the machine with the server, takes as little CPU as it can)


def _http_bodies(n_events: int, batch: int) -> list[bytes]:
    import orjson

    from tests.harness.audit_service import sample_event

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


async def _http_drive(url: str, token: str, bodies: list[bytes], concurrency: int) -> list[float]:
    """POST every body over ``concurrency`` keep-alive HTTP/1.1 connections (asyncio
    streams, requests prepared in advance); re-send after a 503 as a client would."""
    import asyncio

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
            while not queue.empty():
                req = queue.get_nowait()
                while True:
                    t0 = time.perf_counter()
                    writer.write(req)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    status = int(head.split(b" ", 2)[1])
                    length, retry = 0, 1.0
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


def bench_http(
    ctx: Ctx, *, events: int = 100_000, batch: int = 100, concurrency: int = 8
) -> dict[str, Any]:
    """The real service process (uvicorn, SQLite WAL + synchronous=FULL) takes batches of
    100 events from 8 keep-alive connections; each batch is answered once durable."""
    import asyncio

    from tests.harness.audit_service import ServiceProcess, make_audit_env

    with tempfile.TemporaryDirectory(prefix="audit-http-bench-") as d:
        env = make_audit_env(Path(d))
        # the service's capacity, not one token's quota: lift the per-token limits
        # (issue #12) that would otherwise refuse one token sending this much
        lifted = ("--token-events-per-minute", "100000000", "--token-kib-per-minute", "100000000")
        sp = ServiceProcess(env, checkpoint_interval=10.0, extra_args=lifted).start()
        try:
            asyncio.run(
                _http_drive(sp.url, env.tokens["portal"], _http_bodies(2_000, batch), concurrency)
            )
            bodies = _http_bodies(events, batch)
            t0 = time.perf_counter()
            lat = asyncio.run(_http_drive(sp.url, env.tokens["portal"], bodies, concurrency))
            elapsed = time.perf_counter() - t0
        finally:
            sp.stop()
    lat.sort()
    return {
        "http_events_per_s": round(len(bodies) * batch / elapsed),
        "http_batch_p50_ms": round(statistics.median(lat) * 1000, 2),
        "http_batch_p99_ms": _p99(lat),
        "http_events": len(bodies) * batch,
        "http_batch": batch,
        "http_concurrency": concurrency,
    }


# ==== end of the http_events_per_s section ================================================


SECTIONS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "validate": bench_validate,
    "sqlite": bench_sqlite,
    "verify": bench_verify,
    "proofs": bench_proofs,
    "query": bench_query,
    "postgres": bench_postgres,
    "http": bench_http,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="entries per log")
    ap.add_argument("--batch", type=int, default=1000, help="events per append call")
    ap.add_argument("--only", nargs="*", choices=sorted(SECTIONS), help="run only these sections")
    ap.add_argument(
        "--log",
        type=Path,
        help="keep the SQLite log (and its key) in this directory and reuse it on the next run "
        "(e.g. `--log /tmp/audit-1m --only verify`: builds it once, then only verifies)",
    )
    args = ap.parse_args()
    ctx = Ctx(args.n, args.batch, args.log)
    result: dict[str, Any] = {"benchmark": "audit"}
    for name, fn in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        metrics = fn(ctx)
        print(
            f"== {name}: {metrics} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True
        )
        result.update(metrics)
    if ctx.log is not None:
        ctx.log.close()
    result.update({"n": args.n, "batch": args.batch, "unit": "events/s, ms"})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
