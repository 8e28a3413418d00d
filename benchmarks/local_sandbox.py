"""Benchmark: from a spawn request to a usable sandboxed single-user server, locally.

Run with `make bench`, or `.venv/bin/python -P benchmarks/local_sandbox.py`.

One real JupyterHub (configurable-http-proxy, ``SandboxSpawner``) is started; its
user's server is spawned N times (stopped in between). Each sample is the time from
``POST /hub/api/users/<name>/server`` until the hub reports the server ready, which
happens only after the server answered through its socket bridge, i.e. after it
reached the hub API through the sandbox's only path out; then a real kernel is
started and runs one cell (``kernel_seconds``). Also reported: the resident memory
of the sandbox's processes (runuser, bwrap, socat, the server) while idle.
Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.local_hub import (  # noqa: E402
    LocalHub,
    Workspace,
    cmdline,
    descendants,
    shared_state_dir,
)

N = 3


def _rss_kib(root_pid: int) -> int:
    """Resident memory of ``root_pid``'s descendants that are not the proxy."""
    total = 0
    for pid in descendants(root_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"configurable-http-proxy" in cmdline(pid):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    spawn: list[float] = []
    kernel: list[float] = []
    rss = 0
    with shared_state_dir() as state:
        hub = LocalHub.start(enclave="bench", state_dir=state, datasets=[])
        try:
            for _ in range(N):
                spawn.append(hub.spawn("alice"))
                started = time.monotonic()
                Workspace(hub=hub, user="alice").run("print(1)")
                kernel.append(time.monotonic() - started)
                rss = _rss_kib(hub.process.pid)
                hub.stop_server("alice")
        finally:
            hub.stop()
    print(
        json.dumps(
            {
                "benchmark": "local_sandbox",
                "spawn_to_ready_s_median": round(statistics.median(spawn), 3),
                "spawn_to_ready_s": [round(s, 3) for s in spawn],
                "first_cell_s_median": round(statistics.median(kernel), 3),
                "idle_server_with_one_kernel_rss_kib": rss,
                "n": N,
                "unit": "s (times), KiB (memory)",
            }
        )
    )


if __name__ == "__main__":
    main()
