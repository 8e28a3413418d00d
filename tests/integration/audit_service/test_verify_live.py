"""'Verify the whole log now' on a live log: intake keeps arriving and keeps being
accepted (verification reads one snapshot; it does not pause intake), the verification
must not raise a false alarm, and no event is lost."""

from __future__ import annotations

import threading

from audit.log import AuditLog
from tests.harness.audit_service import AuditEnv, sample_event
from tests.harness.common import wait_until

from .conftest import bearer, make_client, officer_csrf, ui_verify


def test_verification_during_intake_is_accurate_and_loses_nothing(
    env: AuditEnv, log: AuditLog
) -> None:
    with make_client(
        env, log, checkpoint_interval_seconds=0.05, integrate_interval_seconds=0.01
    ) as client:
        csrf = officer_csrf(client, env.officer_token)

        sent: list[str] = []
        refused: list[str] = []
        stop = threading.Event()

        def flood() -> None:
            while not stop.is_set():
                batch = [sample_event().to_dict() for _ in range(20)]
                r = client.post(
                    "/v1/events", json={"events": batch}, headers=bearer(env.tokens["portal"])
                )
                if r.status_code == 200:
                    sent.extend(e["id"] for e in batch)
                else:  # one sender is far below capacity: any refusal means intake paused
                    refused.append(f"{r.status_code} {r.text}")

        t = threading.Thread(target=flood)
        t.start()
        try:
            results = []
            for _ in range(5):
                # Each verification starts once more events got in since the last one
                # (a condition polled with a deadline, not a rate the sender must reach).
                want = len(sent) + 100

                def taken(want: int = want) -> bool:
                    assert refused == []
                    assert t.is_alive(), "the sender stopped"
                    return len(sent) >= want

                wait_until(f"intake to take {want} events", taken, 60, interval=0.01)
                status = ui_verify(client, csrf)
                results.append((status["ok"], status["message"]))
        finally:
            stop.set()
            t.join(timeout=30)
    assert all(ok for ok, _ in results), results
    assert refused == []
    ids = {row[2] for row in log.store.entries(0, log.sequenced())}
    assert set(sent) <= ids
    assert len(sent) >= 500
