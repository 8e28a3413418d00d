"""Officer login decisions and refused intake are themselves in the log."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient

from audit.log import AuditLog
from tests.harness.audit_service import AuditEnv, sample_event

from .conftest import bearer, client_from, make_app, make_client


def _actions(log: AuditLog) -> list[dict[str, Any]]:
    rows = log.store.entries(0, log.sequenced())
    return [orjson.loads(r[-1]) for r in rows if r[4] == "audit"]


def _rejections(log: AuditLog, expected: dict[str, int]) -> dict[str, int]:
    """The ``audit.intake.rejected`` counts by reason, summed over every summary.

    The service reports on a timer, so one burst of refusals may be split over several
    summaries (whichever window each request fell in): poll until the sums reach
    ``expected`` (or the deadline passes) and return them for the caller to compare.
    """
    deadline = time.monotonic() + 60
    totals: dict[str, int] = {}
    while time.monotonic() < deadline:
        totals = {}
        for e in _actions(log):
            if e["action"] == "audit.intake.rejected":
                reason = e["details"]["reason"]
                totals[reason] = totals.get(reason, 0) + e["details"]["count"]
        if totals == expected:
            break
        time.sleep(0.05)  # poll interval; the deadline bounds the wait
    return totals


def _login(client: TestClient, token: str) -> Any:
    form = client.get("/ui/login")
    csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post(
        "/ui/login", data={"token": token, "login_csrf": csrf.group(1)}, follow_redirects=False
    )


def test_logins_failures_and_lockout_are_recorded(env: AuditEnv, log: AuditLog) -> None:
    with make_client(env, log, checkpoint_interval_seconds=0, max_login_failures=3) as client:
        ok = _login(client, env.officer_token)
        assert ok.status_code == 303
        assert ok.headers["location"] == "/ui/"
        cookie = ok.headers["set-cookie"]
        assert "__Host-enclave_audit=" in cookie
        for attr in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
            assert attr.lower() in cookie.lower()
        for _ in range(3):
            assert _login(client, "wrong-" + "x" * 40).status_code == 401
        locked = _login(client, env.officer_token)  # even the right token, while locked
        assert locked.status_code == 429
        assert "locked" in locked.text
    events = _actions(log)
    assert [e["action"] for e in events] == [
        "auth.factor.verified",
        "auth.factor.failed",
        "auth.factor.failed",
        "auth.factor.failed",
        "auth.lockout",
        "audit.intake.rejected",  # the login tried while locked, summarised at shutdown
    ]
    assert {e["actor"] for e in events[:-1]} == {"officer:bootstrap"}
    assert events[-1]["details"] == {"reason": "officer_login_locked", "count": 1}
    assert events[1]["outcome"] == "failure"
    assert "did not match" in events[1]["details"]["reason"]


def test_a_login_post_without_the_form_token_is_refused_and_checks_nothing(
    client: TestClient, env: AuditEnv, log: AuditLog
) -> None:
    r = client.post(
        "/ui/login", data={"token": env.officer_token, "login_csrf": "x"}, follow_redirects=False
    )
    assert r.status_code == 403
    assert "set-cookie" not in r.headers
    assert _actions(log) == []


def test_refused_intake_is_summarised_into_the_log(env: AuditEnv, log: AuditLog) -> None:
    with make_client(
        env, log, checkpoint_interval_seconds=0, rejection_report_interval_seconds=0.2
    ) as client:
        for _ in range(7):
            client.post(
                "/v1/events", json={"events": [sample_event().to_dict()]}, headers=bearer("bad")
            )
        client.post(
            "/v1/events",
            json={"events": [sample_event(source="hub").to_dict()]},
            headers=bearer(env.tokens["portal"]),
        )
        summary = _rejections(log, {"unauthenticated": 7, "wrong_source": 1})
    assert summary == {"unauthenticated": 7, "wrong_source": 1}


def test_wrong_officer_bearer_tokens_leave_a_record(env: AuditEnv, log: AuditLog) -> None:
    # Guessing the officer token on the read API must not go unrecorded.
    with make_client(
        env, log, checkpoint_interval_seconds=0, rejection_report_interval_seconds=0.2
    ) as client:
        for _ in range(5):
            r = client.get("/v1/events", headers=bearer("not-the-officer-token"))
            assert r.status_code == 401
        summary = _rejections(log, {"officer_token": 5})
    assert summary == {"officer_token": 5}


def test_responses_with_access_records_are_never_cached(env: AuditEnv, log: AuditLog) -> None:
    with make_client(env, log, checkpoint_interval_seconds=0) as client:
        r = client.get("/v1/events", headers=bearer(env.officer_token))
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"


def _app(env: AuditEnv, log: AuditLog, **settings: Any) -> FastAPI:
    """The service without its checkpoint timer (these tests sign none)."""
    return make_app(env, log, checkpoint_interval_seconds=0, **settings)


def test_a_lockout_holds_one_address_not_every_officer(env: AuditEnv, log: AuditLog) -> None:
    # A global lock would let anyone lock every officer out by sending wrong tokens.
    app = _app(env, log, max_login_failures=3)
    with client_from(app, "192.0.2.7") as guesser, client_from(app, "198.51.100.2") as officer:
        for _ in range(3):
            assert _login(guesser, "wrong-" + "y" * 40).status_code == 401
        assert _login(guesser, env.officer_token).status_code == 429
        assert _login(officer, env.officer_token).status_code == 303
    events = _actions(log)
    lockouts = [e for e in events if e["action"] == "auth.lockout"]
    assert [e["client_ip"] for e in lockouts] == ["192.0.2.7"]
    verified = [e for e in events if e["action"] == "auth.factor.verified"]
    assert [e["client_ip"] for e in verified] == ["198.51.100.2"]


def test_wrong_bearer_tokens_lock_the_address_out_of_the_read_api(
    env: AuditEnv, log: AuditLog
) -> None:
    app = _app(env, log, max_login_failures=4, rejection_report_interval_seconds=0.2)
    with client_from(app, "192.0.2.9") as guesser, client_from(app, "198.51.100.3") as officer:
        for _ in range(4):
            assert guesser.get("/v1/events", headers=bearer("guess-" + "z" * 40)).status_code == 401
        locked = guesser.get("/v1/events", headers=bearer(env.officer_token))
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) >= 1
        assert locked.json()["reason"] == "locked"
        assert officer.get("/v1/events", headers=bearer(env.officer_token)).status_code == 200
        summary = _rejections(log, {"officer_token": 4, "officer_token_locked": 1})
    assert summary == {"officer_token": 4, "officer_token_locked": 1}


def test_behind_a_trusted_proxy_the_forwarded_client_is_recorded_and_locked(
    env: AuditEnv, log: AuditLog
) -> None:
    app = _app(env, log, max_login_failures=2, trusted_proxies=("10.0.0.0/8",))
    with client_from(app, "10.0.0.5") as proxy:
        guesser = {"X-Forwarded-For": "192.0.2.7"}
        officer = {"X-Forwarded-For": "198.51.100.2"}
        for _ in range(2):
            r = proxy.get("/v1/events", headers={**bearer("guess-" + "q" * 40), **guesser})
            assert r.status_code == 401
        locked = proxy.get("/v1/events", headers={**bearer(env.officer_token), **guesser})
        assert locked.status_code == 429
        ok = proxy.get("/v1/events", headers={**bearer(env.officer_token), **officer})
        assert ok.status_code == 200
    reads = [e for e in _actions(log) if e["action"] == "audit.read"]
    assert [e["client_ip"] for e in reads] == ["198.51.100.2"]


def test_a_forwarded_header_from_an_untrusted_peer_is_ignored(env: AuditEnv, log: AuditLog) -> None:
    app = _app(env, log)
    with client_from(app, "203.0.113.4") as client:
        r = client.get(
            "/v1/events",
            headers={**bearer(env.officer_token), "X-Forwarded-For": "198.51.100.2"},
        )
        assert r.status_code == 200
    reads = [e for e in _actions(log) if e["action"] == "audit.read"]
    assert [e["client_ip"] for e in reads] == ["203.0.113.4"]
