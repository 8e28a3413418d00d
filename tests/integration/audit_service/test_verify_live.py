"""'Verify the whole log now' on a live log: intake keeps arriving and keeps being
accepted (verification reads one snapshot; it does not pause intake), the verification
must not raise a false alarm, and no event is lost."""

from __future__ import annotations

import re
import threading
import time

from audit.log import AuditLog
from tests.harness.audit_service import AuditEnv, sample_event

from .conftest import bearer, make_client


def test_verification_during_intake_is_accurate_and_loses_nothing(
    env: AuditEnv, log: AuditLog
) -> None:
    with make_client(
        env, log, checkpoint_interval_seconds=0.05, integrate_interval_seconds=0.01
    ) as client:
        form = client.get("/ui/login").text
        csrf = re.search(r'name="login_csrf" value="([^"]+)"', form)
        assert csrf is not None
        client.post("/ui/login", data={"token": env.officer_token, "login_csrf": csrf.group(1)})
        page = client.get("/ui/verify").text
        session_csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert session_csrf is not None

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
                deadline = time.monotonic() + 5
                while len(sent) < 200 and time.monotonic() < deadline:
                    time.sleep(0.01)
                start = client.post("/ui/verify", headers={"X-CSRF-Token": session_csrf.group(1)})
                assert start.status_code == 200, start.text
                job = start.json()["job"]
                deadline = time.monotonic() + 60
                while True:
                    status = client.get(f"/ui/verify/{job}.json").json()
                    if status["finished"]:
                        break
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                results.append((status["ok"], status["message"]))
        finally:
            stop.set()
            t.join(timeout=30)
    assert all(ok for ok, _ in results), results
    assert refused == []
    ids = {row[2] for row in log.store.entries(0, log.sequenced())}
    assert set(sent) <= ids
    assert len(sent) >= 200
