"""WebAuthn over HTTP with a software authenticator: enrolment, approval gating for
high tiers, step-up on entry, and hostile payloads answered 4xx and audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal
from tests.harness.softkey import SoftKey

from .helpers import FakeClock, approve_pending, csrf_meta, csrf_of, portal_env
from .test_web_flows import ADMIN, enrol_alice, login, register


@pytest.fixture
def env(tmp_path: Path) -> tuple[Portal, MemoryAuditSink, TestClient, FakeClock]:
    clock = FakeClock()
    portal, sink, client = portal_env(tmp_path, clock)
    return portal, sink, client, clock


def step_up(client: TestClient, enclave: str, key: SoftKey, **kw: object) -> tuple[int, str]:
    page = client.get(f"/enclaves/{enclave}", follow_redirects=False)
    opts = client.post(
        f"/enclaves/{enclave}/webauthn/options", headers={"X-CSRF-Token": csrf_meta(page.text)}
    )
    assert opts.status_code == 200, opts.text
    r = client.post(
        f"/enclaves/{enclave}/webauthn",
        follow_redirects=False,
        data={
            "csrf": csrf_of(page.text),
            "credential": json.dumps(key.get_assertion(opts.text, **kw)),
        },
    )  # type: ignore[arg-type]
    return r.status_code, r.text


def test_high_tier_counts_a_key_only_after_approval(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
) -> None:
    _portal, sink, client, clock = env
    key = SoftKey(origin="https://localhost")
    secret = enrol_alice(client, clock, key=key)
    login(client, secret, clock)
    register(client, "genome-high", "nbdc-high", ["alice"])
    status, text = step_up(client, "genome-high", key)
    assert status == 403
    assert "Entry refused" in text
    assert "phishing-resistant" in text
    assert approve_pending(client, "alice") == ["totp", "webauthn"]
    status, text = step_up(client, "genome-high", key)
    assert status == 303, text
    acts = sink.actions()
    assert "admin.credential.approved" in acts
    assert "session.stepped_up" in acts
    allowed = [e for e in sink.events if e["action"] == "enclave.entry.allowed"]
    assert allowed[-1]["enclave"] == "genome-high"
    assert "hwk" in allowed[-1]["details"]["amr"]


def test_step_up_without_uv_is_refused_with_reasons(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
) -> None:
    _portal, sink, client, clock = env
    key = SoftKey(origin="https://localhost")
    secret = enrol_alice(client, clock, key=key)
    login(client, secret, clock)
    approve_pending(client, "alice")
    register(client, "genome-high", "nbdc-high", ["alice"])
    status, text = step_up(client, "genome-high", key, uv=False)
    assert status == 401
    assert "User verification is required" in text
    assert sink.events[-1]["action"] == "enclave.entry.refused"


@pytest.mark.parametrize(
    ("credential", "status", "message"),
    [
        ("not json", 400, "not valid JSON"),
        ('{"id": "AAAA"}', 400, "not enrolled"),
        ("x" * 20000, 400, "larger than"),
    ],
)
def test_hostile_payloads_at_login(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
    credential: str,
    status: int,
    message: str,
) -> None:
    _portal, sink, client, clock = env
    secret = enrol_alice(client, clock, key=SoftKey(origin="https://localhost"))
    login(client, secret, clock)
    client.post("/logout", data={"csrf": csrf_of(client.get("/").text)})
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "username": "alice"})
    r = client.post(
        "/login/password", data={"csrf": csrf_of(r.text), "password": "ochre lantern gravel 41"}
    )
    client.post("/login/webauthn/options", headers={"X-CSRF-Token": csrf_meta(r.text)})
    r = client.post("/login/webauthn", data={"csrf": csrf_of(r.text), "credential": credential})
    assert r.status_code == status
    assert message in r.text
    assert sink.events[-1]["action"] == "auth.webauthn.rejected"


def test_wrong_origin_registration_is_refused(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
) -> None:
    _portal, sink, client, clock = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    page = client.get("/enrol")
    opts = client.post("/enrol/webauthn/options", headers={"X-CSRF-Token": csrf_meta(page.text)})
    evil = SoftKey(origin="https://evil.example")
    r = client.post(
        "/enrol/webauthn",
        data={"csrf": csrf_of(page.text), "credential": json.dumps(evil.register(opts.text))},
    )
    assert r.status_code == 400
    assert "registration was refused" in r.text
    ev = sink.events[-1]
    assert ev["action"] == "auth.enrolment.webauthn"
    assert ev["outcome"] == "failure"
    # The challenge was consumed: replaying a good response now fails too.
    good = SoftKey(origin="https://localhost")
    r = client.post(
        "/enrol/webauthn",
        data={"csrf": csrf_of(page.text), "credential": json.dumps(good.register(opts.text))},
    )
    assert r.status_code == 400
    assert "No WebAuthn ceremony is pending" in r.text


def test_rebind_drops_factors_and_reinvites(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
) -> None:
    _portal, sink, client, clock = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    r = client.post("/api/admin/users/alice/rebind", headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["invitation_code"]
    users = client.get("/api/admin/users", headers=ADMIN).json()
    assert users[0]["status"] == "invited"
    assert users[0]["credentials"] == []
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    assert "admin.user.rebound" in sink.actions()


def test_absolute_session_limit(env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock]) -> None:
    _portal, sink, client, clock = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    for _ in range(12 * 4):  # keep the session active every 15 minutes for 12 hours
        clock.advance(14 * 60 + 59)
        assert client.get("/", follow_redirects=False).status_code == 200
    clock.advance(14 * 60)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    ended = [e for e in sink.events if e["action"] == "session.ended"]
    assert ended[-1]["details"]["reason"] == "maximum session length"


def test_officer_revokes_a_session(
    env: tuple[Portal, MemoryAuditSink, TestClient, FakeClock],
) -> None:
    _portal, sink, client, clock = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    sessions = client.get("/api/admin/sessions", headers=ADMIN).json()
    assert len(sessions) == 1
    prefix = sessions[0]["session"][:12]
    assert client.delete(f"/api/admin/sessions/{prefix}", headers=ADMIN).status_code == 204
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    ended = [e for e in sink.events if e["action"] == "session.ended"]
    assert ended[-1]["details"]["reason"] == "revoked by officer"
    assert client.delete("/api/admin/sessions/short", headers=ADMIN).status_code == 404
    assert (
        client.get("/api/admin/sessions", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert sink.events[-1]["action"] == "admin.auth.failed"
