"""No sandbox outlives the hub that started it (a hub of its own: this test kills it)."""

from __future__ import annotations

import time

from tests.harness.local_hub import LocalHub, processes_naming, shared_state_dir


def test_sandbox_does_not_outlive_a_killed_hub() -> None:
    with shared_state_dir() as state:
        hub = LocalHub.start(enclave="gamma", state_dir=state, datasets=[])
        try:
            hub.spawn("alice")
            marker = str(state / "sockets")
            assert processes_naming(marker)  # runuser, bwrap and the socat bridges
            hub.crash()  # SIGKILL, no clean-up
            deadline = time.monotonic() + 60
            while processes_naming(marker) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert processes_naming(marker) == []
        finally:
            hub.stop()
