"""Crash safety: SIGKILL the writer mid-stream, 20 times, on each store.

Afterwards every acknowledged event is present at its acknowledged index, every batch
is present whole or not at all (nothing half-written), and verification passes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from audit import open_log, verify_store

ROOT = Path(__file__).resolve().parents[3]
KILLS = 20


def test_sigkill_during_sustained_appends(store_url: str, key_file: Path) -> None:
    rng = random.Random(1234)
    acked: dict[tuple[int, int], tuple[int, int]] = {}  # (run, batch) -> (first, n)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for run in range(KILLS):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.audit._crash_writer",
                store_url,
                str(key_file),
                str(run),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
            text=True,
        )
        assert proc.stdout is not None
        want = rng.randint(1, 40)  # kill after a random number of acknowledgements
        seen = 0
        try:
            for line in proc.stdout:  # blocks until the writer acknowledges something
                if not line.startswith("ack "):
                    continue  # the writer's own log lines
                _, r, b, first, n = line.split()
                acked[(int(r), int(b))] = (int(first), int(n))
                seen += 1
                if seen >= want:
                    proc.send_signal(signal.SIGKILL)
                    break
        finally:
            proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
        assert seen >= 1, f"writer run {run} acknowledged nothing"

    with open_log(store_url, signer_key_path=key_file) as log:
        total = log.sequenced()
        # Every acknowledged event is where it was acknowledged.
        for (run, batch), (first, n) in acked.items():
            for i in range(n):
                ev = log.stored_event(first + i).event
                assert ev.id == f"crash-{run}-{batch}-{i}"
        # Nothing half-written: every stored batch is complete.
        counts: dict[tuple[int, int], int] = {}
        expected: dict[tuple[int, int], int] = {}
        for row in log.store.iter_entries(0, total):
            _, run_s, batch_s, _i = str(row[2]).split("-")
            key = (int(run_s), int(batch_s))
            counts[key] = counts.get(key, 0) + 1
            expected[key] = 1 + key[1] % 50
        assert counts == expected
        assert set(acked) <= set(counts)
        assert log.integrate() == total
        log.checkpoint()
    report = verify_store(open_log(store_url).store)
    assert report.ok, report.problems
    assert report.entries == total > len(acked)


def test_two_writer_processes_share_one_sequence(store_url: str, key_file: Path) -> None:
    """Two processes appending (and integrating, and signing) at once: indexes stay
    contiguous and unique, every acknowledged batch is where it was acknowledged."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.audit._crash_writer",
                store_url,
                str(key_file),
                str(100 + w),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        for w in range(2)
    ]
    acked: dict[tuple[int, int], tuple[int, int]] = {}
    try:
        for proc in procs:  # read each writer's first 30 acknowledgements
            assert proc.stdout is not None
            seen = 0
            for line in proc.stdout:
                if line.startswith("ack "):
                    _, r, b, first, n = line.split()
                    acked[(int(r), int(b))] = (int(first), int(n))
                    seen += 1
                    if seen == 30:
                        break
            assert seen == 30, proc.stderr.read() if proc.stderr else ""
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
    with open_log(store_url, signer_key_path=key_file) as log:
        for (run, batch), (first, n) in acked.items():
            assert [log.stored_event(first + i).event.id for i in range(n)] == [
                f"crash-{run}-{batch}-{i}" for i in range(n)
            ]
        total = log.sequenced()
        ids = [str(row[2]) for row in log.store.iter_entries(0, total)]
        assert len(ids) == len(set(ids)) == total
        log.integrate()
        log.checkpoint()
        report = verify_store(log.store)
    assert report.ok, report.problems
