"""`enclave audit verify` on a live log: a real writer process keeps appending,
integrating and signing checkpoints while verification runs again and again.

Every run must pass (it judges one snapshot of the store, so nothing the writer
commits meanwhile can look like tampering), every run must have seen a log that is
still growing, and a log tampered with while the writer runs must still fail.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from audit.cli import audit
from audit.log import open_store

ROOT = Path(__file__).resolve().parents[3]
RUNS = 12  # verification runs per store (bounded by count ...)
BUDGET_S = 40.0  # ... and by time
TAMPERED = 5  # an index that is integrated long before it is tampered with


def _size(url: str) -> int:
    store = open_store(url, create=False)
    try:
        return store.size()
    finally:
        store.close()


def _wait_for(url: str, n: int, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 60
    while (size := _size(url)) < n:
        assert proc.poll() is None, "the writer process died"
        assert time.monotonic() < deadline, f"the writer appended only {size} entries in 60 s"
        time.sleep(0.05)  # polls the store's size with a deadline
    return size


def _verify(url: str, *extra: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(audit, ["verify", "--store", url, "--no-progress", *extra])
    return r.exit_code, r.stdout, r.stderr


def _tamper(backend: str, url: str, request: pytest.FixtureRequest) -> None:
    """Change one byte of an integrated entry's leaf, as an intruder with the owner's
    rights would (the append-only triggers have to be removed first)."""
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite://"), timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DROP TRIGGER audit_entries_no_update")
            conn.execute(
                "UPDATE audit_entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'proj-live', "
                "'proj-livE') AS BLOB) WHERE idx = ?",
                (TAMPERED,),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    admin = request.getfixturevalue("pg_migrated").admin_url
    with psycopg.connect(admin) as conn:
        conn.execute("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_change")
        cur = conn.execute(
            "UPDATE audit_entries SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), "
            "'proj-live', 'proj-livE'), 'UTF8') WHERE idx = %s",
            (TAMPERED,),
        )
        assert cur.rowcount == 1


def test_verify_while_a_writer_appends_integrates_and_signs(
    backend: str, store_url: str, key_file: Path, request: pytest.FixtureRequest
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if backend == "sqlite":  # the writer creates the SQLite file; PostgreSQL is migrated
        created = open_store(store_url)
        created.migrate()
        created.close()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.audit._live_writer",
            store_url,
            str(key_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    try:
        _wait_for(store_url, 20_000, proc)
        results: list[tuple[int, str, str, int, int]] = []
        deadline = time.monotonic() + BUDGET_S
        while len(results) < RUNS and time.monotonic() < deadline:
            before = _size(store_url)
            extra = ("--workers", "2") if len(results) % 4 == 3 else ()
            code, out, err = _verify(store_url, *extra)
            results.append((code, out, err, before, _size(store_url)))
        assert proc.poll() is None, "the writer process died during the runs"
        assert len(results) >= 4, f"only {len(results)} verification runs in {BUDGET_S} s"
        failed = [(c, o, e) for c, o, e, _, _ in results if c != 0]
        assert failed == [], failed
        assert all(o.startswith("OK: ") and e == "" for _, o, e, _, _ in results), results
        # The writer really was writing during the runs, not between them.
        grew = sum(1 for *_, b, a in results if a > b)
        assert grew >= len(results) // 2, [(b, a) for *_, b, a in results]

        _tamper(backend, store_url, request)
        _wait_for(store_url, _size(store_url) + 50, proc)  # the writer goes on meanwhile
        code, out, err = _verify(store_url)
        assert code == 1, (out, err)
        assert err.startswith(f"verify: FAILED at index {TAMPERED}: "), err
    finally:
        proc.kill()
        proc.wait(timeout=30)
