"""A writer for the crash test: appends batches forever, printing each acknowledgement.

``python -m tests.integration.audit._crash_writer STORE_URL KEY_FILE RUN``. A line
``ack RUN BATCH FIRST N`` is printed (and flushed) only after ``append`` returned,
i.e. after the batch is durable. Every few batches it integrates and checkpoints, so
a kill can land in any of the three steps.
"""

from __future__ import annotations

import sys

from audit import Event, open_log


def main() -> None:
    url, key, run = sys.argv[1], sys.argv[2], int(sys.argv[3])
    log = open_log(url, signer_key_path=key)
    batch = 0
    while True:
        n = 1 + batch % 50
        events = [
            Event(
                id=f"crash-{run}-{batch}-{i}",
                time="2026-11-26T10:00:00Z",
                source="workspace",
                actor=f"r{run}",
                action="workspace.file.get",
                outcome="success",
                enclave="proj-crash",
                details={"path": f"/data/{batch}/{i}", "bytes": i},
            )
            for i in range(n)
        ]
        idx = log.append(events)
        print(f"ack {run} {batch} {idx[0]} {n}", flush=True)
        if batch % 3 == 2:
            log.integrate()
        if batch % 7 == 6:
            log.checkpoint()
        batch += 1


if __name__ == "__main__":
    main()
