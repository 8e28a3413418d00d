"""`enclave audit verify` on a live log: a real writer process keeps appending,
integrating and signing checkpoints while verification runs again and again.

Every run must pass (it judges one snapshot of the store, so nothing the writer
commits meanwhile can look like tampering), and a log tampered with while the writer
runs must still fail. That the writer really commits during a run is not left to
relative process speed: every other run holds its snapshot open (in verify's progress
callback, before the last checks) until the writer has committed more entries.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from audit import VerifyReport, verify_store
from audit.cli import audit
from audit.log import open_store
from tests.harness.common import tamper_postgres, tamper_sqlite, wait_until

ROOT = Path(__file__).resolve().parents[3]
RUNS = 8  # verification runs per store: a count, never a time budget
TAMPERED = 5  # an index that is integrated long before it is tampered with


def _size(url: str) -> int:
    store = open_store(url, create=False)
    try:
        return store.size()
    finally:
        store.close()


def _wait_for(url: str, n: int, proc: subprocess.Popen[bytes]) -> int:
    """The store's size once it reaches ``n`` (the deadline catches a hung writer)."""

    def grown() -> int:
        assert proc.poll() is None, "the writer process died"
        size = _size(url)
        return size if size >= n else 0

    return wait_until(f"the writer to reach {n} entries", grown, 300)


def _verify_while_it_grows(url: str, proc: subprocess.Popen[bytes]) -> VerifyReport:
    """``verify_store`` whose snapshot stays open until the writer has committed entries
    beyond it: the progress callback (called inside the snapshot after the entries are
    scanned, before tiles, heads and the index are checked) polls for that."""

    def hold(_done: int, total: int) -> None:
        _wait_for(url, total + 1, proc)

    store = open_store(url, create=False)
    try:
        return verify_store(store, progress=hold)
    finally:
        store.close()


def _verify(url: str, *extra: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(audit, ["verify", "--store", url, "--no-progress", *extra])
    return r.exit_code, r.stdout, r.stderr


def _tamper(backend: str, url: str, request: pytest.FixtureRequest) -> None:
    """Change one byte of an integrated entry's leaf, as an intruder with the owner's
    rights would (the append-only triggers have to be removed first)."""
    if backend == "sqlite":
        tamper_sqlite(
            url.removeprefix("sqlite://"),
            (
                "UPDATE audit_entries SET leaf = CAST(replace(CAST(leaf AS TEXT), 'proj-live', "
                "'proj-livE') AS BLOB) WHERE idx = ?",
                (TAMPERED,),
            ),
        )
        return
    admin = request.getfixturevalue("pg_migrated").admin_url
    changed = tamper_postgres(
        admin,
        (
            "UPDATE audit_entries SET leaf = convert_to(replace(convert_from(leaf, 'UTF8'), "
            "'proj-live', 'proj-livE'), 'UTF8') WHERE idx = %s",
            (TAMPERED,),
        ),
    )
    assert changed == [1]


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
        results: list[tuple[int, str, str]] = []
        for run in range(RUNS):
            if run % 2 == 0:  # the writer commits while this one runs, by construction
                report = _verify_while_it_grows(store_url, proc)
                results.append((0 if report.ok else 1, report.summary, ""))
            else:  # the command itself, sometimes in two worker processes
                extra = ("--workers", "2") if run % 4 == 3 else ()
                results.append(_verify(store_url, *extra))
        assert proc.poll() is None, "the writer process died during the runs"
        failed = [r for r in results if r[0] != 0]
        assert failed == [], failed
        assert all(o.startswith("OK: ") and e == "" for _, o, e in results), results

        _tamper(backend, store_url, request)
        _wait_for(store_url, _size(store_url) + 50, proc)  # the writer goes on meanwhile
        code, out, err = _verify(store_url)
        assert code == 1, (out, err)
        assert err.startswith(f"verify: FAILED at index {TAMPERED}: "), err
    finally:
        proc.kill()
        proc.wait(timeout=30)
