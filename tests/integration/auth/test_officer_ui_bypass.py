"""Issue #11 item 1: a phished password and one TOTP code must not open the officer UI.

The attack, through the portal's own HTTP routes with the software authenticator:
the attacker signs in with alice's phished password and one TOTP code, enrols their
own security key without user verification (it stays unapproved), signs in with
password + that key and asks for an ID token for the audit UI. The audit UI's own
checks (``verify_id_token`` and ``officer_decision``, steps 5 and 6 of its sign-in)
then decide, at its minimum tier nbdc-high.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx
from fastapi.testclient import TestClient

from audit.service._oidc import officer_decision, verify_id_token
from auth import MemoryAuditSink, Portal
from tests.harness.softkey import SoftKey

from .helpers import FakeClock, Pkce, add_key, csrf_meta, csrf_of
from .test_web_flows import ADMIN, enrol_alice, login, new_browser, password_step, register

AUDIT_UI = "audit-ui"
AUDIT_REDIRECT = "https://audit.example/ui/oidc/callback"


def register_audit_ui(client: TestClient, **extra: Any) -> str:
    r = client.post(
        "/api/admin/clients",
        json={"client_id": AUDIT_UI, "redirect_uris": [AUDIT_REDIRECT], **extra},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["client_secret"])


def sign_in_with_key(browser: TestClient, key: SoftKey) -> httpx.Response:
    """Password, then the security key (the key's own UV setting) at ``/login/webauthn``."""
    assert password_step(browser).status_code == 303
    page = browser.get("/login/factor")
    opts = browser.post("/login/webauthn/options", headers={"X-CSRF-Token": csrf_meta(page.text)})
    assert opts.status_code == 200, opts.text
    return browser.post(
        "/login/webauthn",
        data={"csrf": csrf_of(page.text), "credential": json.dumps(key.get_assertion(opts.text))},
        follow_redirects=False,
    )


def authorize_audit_ui(browser: TestClient, pkce: Pkce) -> httpx.Response:
    q = {
        "client_id": AUDIT_UI,
        "redirect_uri": AUDIT_REDIRECT,
        "response_type": "code",
        "scope": "openid profile",
        "state": "st-audit",
        "nonce": "n-audit",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    return browser.get("/oidc/authorize?" + urllib.parse.urlencode(q), follow_redirects=False)


def audit_ui_claims(browser: TestClient, secret: str, clock: FakeClock) -> dict[str, Any]:
    """The audit UI's side: code -> token endpoint -> ID token verified as it does."""
    pkce = Pkce.new()
    r = authorize_audit_ui(browser, pkce)
    assert r.status_code == 303, r.text
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)
    assert "code" in q, r.headers["location"]
    tok = browser.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": q["code"][0],
            "redirect_uri": AUDIT_REDIRECT,
            "code_verifier": pkce.verifier,
        },
        auth=(AUDIT_UI, secret),
    )
    assert tok.status_code == 200, tok.text
    return verify_id_token(
        tok.json()["id_token"],
        jwks=browser.get("/oidc/jwks").json(),
        issuer="https://localhost",
        client_id=AUDIT_UI,
        nonce="n-audit",
        now=clock(),
    )


def phish_and_enrol_own_key(client: TestClient, clock: FakeClock) -> tuple[TestClient, SoftKey]:
    """Alice (an officer) is enrolled with password + TOTP; the attacker, holding her
    password and one TOTP code, enrols their own key without UV and signs in with it."""
    secret = enrol_alice(client, clock, roles=("officer",))
    attacker = new_browser(client)
    login(attacker, secret, clock)
    key = SoftKey(origin="https://localhost", uv=False)
    add_key(attacker, key)
    attacker.post("/logout", data={"csrf": csrf_of(attacker.get("/").text)})
    r = sign_in_with_key(attacker, key)
    assert r.status_code == 303, r.text
    return attacker, key


def test_phished_password_and_totp_plus_own_key_without_uv_is_refused_by_the_audit_ui(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    secret = register_audit_ui(client)
    attacker, _key = phish_and_enrol_own_key(client, clock)
    claims = audit_ui_claims(attacker, secret, clock)
    decision = officer_decision(claims, required_role="officer", min_tier="nbdc-high")
    assert not decision.allowed, decision
    assert any("user verification" in r or "approved" in r for r in decision.reasons)
    # acr never overstates: a key that did not verify the user gives no AAL3.
    assert claims["acr"] != "urn:enclave:aal3"
    assert "user" not in claims["amr"]
    assert claims["enclave_approved"] is False
    # The same session is refused by an nbdc-high enclave too.
    register(client, "genome-high", "nbdc-high", ["alice"], networks=["192.0.2.0/24"])
    entry = attacker.get("/enclaves/genome-high", follow_redirects=False)
    assert entry.status_code in (401, 403)


def test_audit_ui_registered_at_nbdc_high_gets_no_code_for_a_session_below_it(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    register_audit_ui(client, tier="nbdc-high")
    attacker, _key = phish_and_enrol_own_key(client, clock)
    r = authorize_audit_ui(attacker, Pkce.new())
    assert r.status_code == 303
    assert "code=" not in r.headers["location"]
    # Stepped up through the sign-in's factor page, with the reasons shown.
    assert r.headers["location"] == "/login/factor"
    page = attacker.get("/login/factor")
    assert page.status_code == 200
    assert "this tier does not count it" in page.text
    ev = [e for e in sink.events if e["action"] == "oidc.authorize.stepup"][-1]
    assert ev["details"]["client_id"] == AUDIT_UI
    assert ev["details"]["tier"] == "nbdc-high"


def test_a_session_at_aal2_cannot_bind_a_key_that_would_reach_aal3(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    secret = enrol_alice(client, clock, roles=("officer",))
    attacker = new_browser(client)
    login(attacker, secret, clock)
    page = attacker.get("/enrol")
    opts = attacker.post("/enrol/webauthn/options", headers={"X-CSRF-Token": csrf_meta(page.text)})
    key = SoftKey(origin="https://localhost", uv=True)
    r = attacker.post(
        "/enrol/webauthn",
        data={"csrf": csrf_of(page.text), "credential": json.dumps(key.register(opts.text))},
    )
    assert r.status_code == 403, r.text
    assert "AAL3" in r.text
    user = _portal.user("alice")
    assert [c.kind for c in _portal.store.list_credentials(user_id=user.id)] == [
        "password",
        "totp",
    ]
    ev = [e for e in sink.events if e["action"] == "auth.enrolment.webauthn"][-1]
    assert ev["outcome"] == "failure"
    assert "AAL3" in ev["details"]["reason"]


def test_officer_approves_one_credential_not_every_pending_one(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, client = env
    phish_and_enrol_own_key(client, clock)
    user = portal.user("alice")
    pending = [c for c in portal.store.list_credentials(user_id=user.id) if not c.approved]
    assert [c.kind for c in pending] == ["totp", "webauthn"]
    # The old "approve everything pending" route is gone.
    assert client.post("/api/admin/users/alice/approve", headers=ADMIN).status_code in (404, 405)
    totp = pending[0]
    r = client.post(f"/api/admin/users/alice/credentials/{totp.id}/approve", headers=ADMIN)
    assert r.status_code == 200, r.text
    after = {c.id: c.approved for c in portal.store.list_credentials(user_id=user.id)}
    assert after[totp.id] is True
    assert after[pending[1].id] is False
    ev = [e for e in sink.events if e["action"] == "admin.credential.approved"]
    assert [e["details"]["credential"] for e in ev] == [totp.id]
    # Approving someone else's credential through alice's name is refused.
    r = client.post("/api/admin/users/alice/credentials/not-a-credential/approve", headers=ADMIN)
    assert r.status_code == 404
