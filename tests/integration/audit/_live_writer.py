"""A writer for the live-verification test: appends, integrates and signs, forever.

``python -m tests.integration.audit._live_writer STORE_URL KEY_FILE``. Batches of
varying size are appended without pause; integration runs every 0.5 s (the audit
service's default interval) and every other integration is checkpointed, so that at
any moment thousands of entries (whole tiles) are sequenced but not integrated, while
tiles, tree heads and checkpoints keep being added as verification reads.
"""

from __future__ import annotations

import sys
import time

from audit import Event, open_log


def main() -> None:
    url, key = sys.argv[1], sys.argv[2]
    log = open_log(url, signer_key_path=key)
    batch = 0
    integrated_at = time.monotonic()
    integrations = 0
    while True:
        n = 50 + batch * 37 % 300
        log.append(
            [
                Event(
                    id=f"live-{batch}-{i}",
                    time="2026-11-26T10:00:00Z",
                    source="workspace",
                    actor=f"r{batch % 7}",
                    action="workspace.file.get",
                    outcome="success",
                    enclave="proj-live",
                    details={"path": f"/data/{batch}/{i}", "bytes": i},
                )
                for i in range(n)
            ]
        )
        if time.monotonic() - integrated_at > 0.5:
            log.integrate()
            integrated_at = time.monotonic()
            integrations += 1
            if integrations % 2 == 0:
                log.checkpoint()
        batch += 1


if __name__ == "__main__":
    main()
