"""Issue #11 items 6 (OIDC half), 7 and 9, through the portal's HTTP routes.

7: re-running a login factor on a signed-in session is a step-up: it must neither
   reset ``auth_time`` (the session's age) nor keep the session id.
9: WebAuthn options say ``userVerification: required`` where the tier requires UV;
   a hub's redirect URIs may be plain http only on a loopback host.
6: refusals at the token and authorization endpoints are audited and counted by
   the per-client-address throttle.
"""

from __future__ import annotations

import json
import urllib.parse

import httpx
import pytest
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal
from tests.harness.softkey import SoftKey

from .helpers import FakeClock, Pkce, approve_pending, csrf_meta, csrf_of
from .test_web_flows import ADMIN, REDIRECT, authorize, enrol_alice, login, post_totp, register
from .test_webauthn_http import step_up


def _session_cookie(client: TestClient) -> str:
    return next(c.value for c in client.cookies.jar if c.name == "__Host-enclave-session")


# ----- item 7 -------------------------------------------------------------------------


def test_rerunning_totp_on_a_signed_in_session_keeps_auth_time_and_rotates_the_session_id(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    (before,) = portal.store.list_sessions()
    cookie = _session_cookie(client)
    clock.advance(10 * 60)
    page = client.get("/")
    assert page.status_code == 200, page.text
    r = post_totp(client, page.text, secret, clock)
    assert r.status_code == 303, r.text
    (after,) = portal.store.list_sessions()
    assert after.auth_time == before.auth_time  # the sign-in did not get younger
    assert after.id_hash != before.id_hash
    assert _session_cookie(client) != cookie
    ev = [e for e in sink.events if e["action"] == "session.stepped_up"][-1]
    assert ev["details"]["factor"] == "totp"
    assert ev["details"]["session"] == after.id_hash[:16]


def signed_in_with_an_approved_key(client: TestClient, clock: FakeClock) -> SoftKey:
    """Alice enrolled with TOTP and a security key (approved), signed in with TOTP."""
    key = SoftKey(origin="https://localhost")
    secret = enrol_alice(client, clock, key=key)
    approve_pending(client, "alice")
    login(client, secret, clock)
    return key


def test_enclave_step_up_rotates_the_session_id(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, _sink, client = env
    key = signed_in_with_an_approved_key(client, clock)
    register(client, "genome-high", "nbdc-high", ["alice"])
    (before,) = portal.store.list_sessions()
    status, _text = step_up(client, "genome-high", key)
    assert status == 303
    (after,) = portal.store.list_sessions()
    assert after.id_hash != before.id_hash
    assert after.auth_time == before.auth_time


# ----- item 9 -------------------------------------------------------------------------


def _options(client: TestClient, page_url: str, options_url: str) -> dict[str, object]:
    page = client.get(page_url, follow_redirects=False)
    r = client.post(options_url, headers={"X-CSRF-Token": csrf_meta(page.text)})
    assert r.status_code == 200, r.text
    return dict(json.loads(r.text))


def test_webauthn_options_require_uv_where_the_tier_requires_it(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    signed_in_with_an_approved_key(client, clock)
    # nbdc-standard login and enrolment: UV preferred (not required by the tier).
    enrol = _options(client, "/enrol", "/enrol/webauthn/options")
    assert enrol["authenticatorSelection"]["userVerification"] == "preferred"  # type: ignore[index]
    register(client, "genome-high", "nbdc-high", ["alice"])
    # An nbdc-high step-up asks for UV, and so does enrolment for its member.
    high = _options(client, "/enclaves/genome-high", "/enclaves/genome-high/webauthn/options")
    assert high["userVerification"] == "required"
    enrol = _options(client, "/enrol", "/enrol/webauthn/options")
    assert enrol["authenticatorSelection"]["userVerification"] == "required"  # type: ignore[index]


@pytest.mark.parametrize(
    ("uri", "ok"),
    [
        ("http://hub.example/hub/oauth_callback", False),
        ("http://10.0.0.5/hub/oauth_callback", False),
        ("http://localhost:8000/hub/oauth_callback", True),
        ("http://127.0.0.1:8000/hub/oauth_callback", True),
        ("https://hub.example/hub/oauth_callback", True),
        ("https:///no-host", False),
    ],
)
def test_hub_redirect_uri_over_plain_http_only_for_loopback(
    env: tuple[Portal, MemoryAuditSink, TestClient], uri: str, ok: bool
) -> None:
    _portal, _sink, client = env
    body = {
        "tier": "nbdc-standard",
        "networks": ["192.0.2.0/24"],
        "client": {"client_id": "hub-x", "redirect_uris": [uri]},
    }
    r = client.put("/api/admin/enclaves/x", json=body, headers=ADMIN)
    assert (r.status_code == 200) is ok, r.text
    if not ok:
        assert r.status_code == 400
        assert "http only for localhost" in r.json()["detail"]
        assert client.get("/api/admin/enclaves", headers=ADMIN).json() == []


# ----- item 6 (OIDC) ------------------------------------------------------------------


def _code(client: TestClient, pkce: Pkce) -> str:
    r = authorize(client, "hub-gut-2026", pkce)
    assert r.status_code == 303, r.text
    return urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["location"]).query)["code"][0]


def _token(
    client: TestClient, code: str, verifier: str, secret: str, **over: str
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **over,
    }
    return client.post("/oidc/token", data=data, auth=("hub-gut-2026", secret))


def _failures(portal: Portal, ip: str) -> int:
    return portal.store.count_ip_failures(ip=ip, now=portal.clock(), window_s=900)


def test_token_endpoint_refusals_are_audited_and_counted(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    hub_secret = register(client, "gut-2026", "nbdc-standard", ["alice"])
    ip = "192.0.2.10"
    reasons = []
    # redirect_uri mismatch
    pkce = Pkce.new()
    r = _token(client, _code(client, pkce), pkce.verifier, hub_secret, redirect_uri=REDIRECT + "x")
    assert r.status_code == 400
    reasons.append("redirect_uri mismatch")
    # malformed PKCE verifier
    r = _token(client, _code(client, Pkce.new()), "short", hub_secret)
    assert r.status_code == 400
    reasons.append("malformed PKCE verifier")
    # membership removed
    pkce = Pkce.new()
    code = _code(client, pkce)
    register(client, "gut-2026", "nbdc-standard", [])
    r = _token(client, code, pkce.verifier, hub_secret)
    assert r.status_code == 400
    assert "no longer a member" in r.json()["error_description"]
    reasons.append("membership removed")
    # ended session
    register(client, "gut-2026", "nbdc-standard", ["alice"])  # the secret is kept
    pkce = Pkce.new()
    code = _code(client, pkce)
    client.post("/logout", data={"csrf": csrf_of(client.get("/").text)})
    r = _token(client, code, pkce.verifier, hub_secret)
    assert r.status_code == 400
    assert "session has ended" in r.json()["error_description"]
    reasons.append("sign-in session ended")
    refused = [e for e in sink.events if e["action"] == "oidc.token.refused"]
    assert [e["details"]["reason"] for e in refused] == reasons
    assert all(e["client_ip"] == ip and e["outcome"] == "failure" for e in refused)
    assert _failures(portal, ip) == len(reasons)
    # A paused address is refused sign-in steps, but a hub calling from it is not locked
    # out of the token endpoint by refusals its users can cause.
    for _ in range(portal.factors.ip_max_failures):
        portal.store.add_ip_failure(ip=ip, now=clock(), window_s=900)
    assert authorize(client, "hub-gut-2026", Pkce.new()).status_code == 429
    r = _token(client, "no-such-code", Pkce.new().verifier, hub_secret)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


def test_authorize_with_an_unknown_client_or_redirect_is_audited_and_counted(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, client = env
    register(client, "gut-2026", "nbdc-standard", [])
    r = authorize(client, "no-such-client", Pkce.new())
    assert r.status_code == 400
    assert "Unknown client_id" in r.text
    q = {
        "client_id": "hub-gut-2026",
        "redirect_uri": "https://evil.example/cb",
        "response_type": "code",
        "scope": "openid",
        "state": "s",
        "code_challenge": Pkce.new().challenge,
        "code_challenge_method": "S256",
    }
    r = client.get("/oidc/authorize?" + urllib.parse.urlencode(q), follow_redirects=False)
    assert r.status_code == 400
    assert "location" not in r.headers  # never redirected to an unregistered URI
    refused = [e for e in sink.events if e["action"] == "oidc.authorize.refused"]
    assert [e["details"]["reason"] for e in refused] == [
        "unknown client_id",
        "unregistered redirect_uri",
    ]
    assert _failures(portal, "192.0.2.10") == 2


def test_authorize_guessing_is_throttled_per_client_address(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, client = env
    for _ in range(portal.factors.ip_max_failures):
        assert authorize(client, "guess", Pkce.new()).status_code == 400
    r = authorize(client, "guess", Pkce.new())
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    assert sink.events[-1]["action"] == "auth.factor.refused"
    assert sink.events[-1]["details"]["reason"] == "client IP limit"
