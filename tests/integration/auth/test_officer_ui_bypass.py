"""Issue #11 item 1: a phished password and one TOTP code must not open the officer UI.

The attack, through the portal's own HTTP routes with the software authenticator:
the attacker signs in with alice's phished password and one TOTP code, enrols their
own security key without user verification (it stays unapproved), signs in with
password + that key and asks for an ID token for the audit UI. The audit UI's own
checks (``verify_id_token`` and ``officer_decision``, steps 5 and 6 of its sign-in)
then decide, at its minimum tier nbdc-high. The last test runs the whole chain over
HTTP: the audit UI's own routes, the portal served on a loopback port for the audit
UI's back channel, and the attacker's browser.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from fastapi.testclient import TestClient

from audit.log import open_log
from audit.server import create_app as create_audit_app
from audit.service import ServiceSettings
from audit.service._oidc import OidcConfig, officer_decision, verify_id_token
from audit.tokens import TokenStore
from auth import MemoryAuditSink, Portal, create_app
from tests.harness.audit_service import make_audit_env
from tests.harness.common import free_port, wait_until
from tests.harness.softkey import SoftKey

from .helpers import FakeClock, Pkce, add_key, csrf_meta, csrf_of, make_settings
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


# ----- the same attack against the audit UI's own HTTP routes ------------------------


@contextlib.contextmanager
def portal_over_http(tmp_path: Path) -> Iterator[tuple[Portal, TestClient, FakeClock]]:
    """A portal served by uvicorn on a loopback port (the audit UI's back channel: token
    endpoint, JWKS, discovery over real HTTP), and the attacker's browser on it. Its
    clock starts now: the audit UI checks the ID token's times against the real clock."""
    port = free_port()
    clock = FakeClock(start=time.time())
    portal = Portal(
        settings=make_settings(tmp_path, issuer=f"http://127.0.0.1:{port}"),
        sink=MemoryAuditSink(),
        clock=clock,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(portal=portal), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def listening() -> bool:
        assert thread.is_alive(), "the portal's server thread ended at start-up"
        return bool(server.started)

    wait_until("the portal to start listening", listening, 30)
    browser = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("192.0.2.10", 50000)
    )
    try:
        yield portal, browser, clock
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def audit_ui(tmp_path: Path, *, issuer: str, secret: str) -> Iterator[tuple[TestClient, Any]]:
    """The audit service in-process with its officer UI signing in through ``issuer``."""
    env = make_audit_env(tmp_path / "audit")
    secret_file = env.root / "oidc-secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    log = open_log(env.store_url, signer_key_path=env.key_path)
    app = create_audit_app(
        log=log,
        tokens=TokenStore(path=env.tokens_path),
        officer_token_file=env.officer_file,
        settings=ServiceSettings(checkpoint_interval_seconds=0),
        oidc=OidcConfig(
            issuer=issuer,
            client_id=AUDIT_UI,
            client_secret_file=secret_file,
            redirect_uri=AUDIT_REDIRECT_TESTSERVER,
            min_tier="nbdc-high",
        ),
    )
    try:
        with TestClient(app, base_url="https://testserver") as client:
            yield client, log
    finally:
        log.close()


AUDIT_REDIRECT_TESTSERVER = "https://testserver/ui/oidc/callback"


def test_the_audit_ui_over_http_refuses_a_phished_password_plus_own_key(tmp_path: Path) -> None:
    with portal_over_http(tmp_path) as (portal, attacker, clock):
        r = attacker.post(
            "/api/admin/clients",
            json={"client_id": AUDIT_UI, "redirect_uris": [AUDIT_REDIRECT_TESTSERVER]},
            headers=ADMIN,
        )
        assert r.status_code == 201, r.text
        secret = enrol_alice(attacker, clock, roles=("officer",))
        login(attacker, secret, clock)
        key = SoftKey(origin=portal.settings.issuer, uv=False)
        add_key(attacker, key)
        attacker.post("/logout", data={"csrf": csrf_of(attacker.get("/").text)})
        assert sign_in_with_key(attacker, key).status_code == 303
        with audit_ui(
            tmp_path, issuer=portal.settings.issuer, secret=r.json()["client_secret"]
        ) as (ui, log):
            start = ui.get("/ui/login/oidc", follow_redirects=False)
            assert start.status_code in (302, 303, 307), start.text
            to_portal = urllib.parse.urlsplit(start.headers["location"])
            assert to_portal.path == "/oidc/authorize"
            back = attacker.get(f"/oidc/authorize?{to_portal.query}", follow_redirects=False)
            assert back.status_code == 303, back.text
            assert back.headers["location"].startswith(AUDIT_REDIRECT_TESTSERVER + "?code=")
            callback = urllib.parse.urlsplit(back.headers["location"])
            answer = ui.get(f"/ui/oidc/callback?{callback.query}", follow_redirects=False)
            assert answer.status_code == 403, answer.text
            assert not any(c.name.endswith("enclave_audit") for c in ui.cookies.jar)
            rows = log.store.entries(0, log.sequenced())
            refused = [orjson.loads(row[-1]) for row in rows if row[4] == "audit"]
            assert refused[-1]["action"] == "auth.factor.failed"
            assert refused[-1]["actor"] == "alice"
            assert refused[-1]["outcome"] == "denied"
            assert "nbdc-high" in refused[-1]["details"]["reason"]
