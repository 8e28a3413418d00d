"""No sandbox outlives the hub that started it (a hub of its own: this test kills it)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.harness.local_hub import LocalHub, shared_state_dir


def _holding(marker: bytes) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_sandbox_does_not_outlive_a_killed_hub() -> None:
    with shared_state_dir() as state:
        hub = LocalHub.start(enclave="gamma", state_dir=state, datasets=[])
        try:
            hub.spawn("alice")
            marker = str(state / "sockets").encode()
            assert _holding(marker)  # runuser, bwrap and the socat bridges
            os.killpg(hub.process.pid, signal.SIGKILL)  # the hub and its proxy, no clean-up
            hub.process.wait()
            deadline = time.monotonic() + 60
            while _holding(marker) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _holding(marker) == []
        finally:
            hub.stop()
