"""The portal's flows over HTTP against the real app: invite, enrol, log in, OIDC.

Starlette's TestClient drives the real ASGI app (no mocks); time is a fake clock so
TOTP steps are chosen, not waited for. Audit events are asserted per flow.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from auth import InvalidInputError, MemoryAuditSink, Portal, create_app, totp_at
from tests.harness import id_tokens
from tests.harness.softkey import SoftKey

from .helpers import (
    ADMIN,
    FakeClock,
    Pkce,
    add_key,
    csrf_of,
    make_portal,
    totp_secret_of,
)

PASSWORD = "ochre lantern gravel 41"
REDIRECT = "https://hub.example/hub/oauth_callback"


def redeem(
    client: TestClient, code: str, pkce: Pkce, secret: str, *, client_id: str = "hub-gut-2026"
) -> httpx.Response:
    """The hub's side of the code flow: redeem ``code`` at the token endpoint."""
    return client.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": pkce.verifier,
        },
        auth=(client_id, secret),
    )


def new_browser(app_client: TestClient) -> TestClient:
    return TestClient(app_client.app, base_url="https://localhost", client=("192.0.2.11", 50000))


def enrol_alice(
    client: TestClient, clock: FakeClock, *, roles: tuple[str, ...] = (), key: SoftKey | None = None
) -> str:
    """invite (with ``roles``, else the default) -> set password -> enrol TOTP (and
    ``key``, while enrolling after the invitation); returns the TOTP secret."""
    body: dict[str, object] = {"username": "alice", "display_name": "Alice"}
    if roles:
        body["roles"] = list(roles)
    r = client.post("/api/admin/users", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    code = r.json()["invitation_code"]
    page = client.get("/invite")
    r = client.post("/invite", data={"csrf": csrf_of(page.text), "code": code})
    assert r.status_code == 200
    assert "new-password" in r.text
    r = client.post(
        "/invite/password",
        data={"csrf": csrf_of(r.text), "password": PASSWORD, "password2": PASSWORD},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    secret = totp_secret_of(r.text)
    assert "<svg" in r.text
    r = client.post(
        "/enrol/totp",
        data={"csrf": csrf_of(r.text), "code": totp_at(secret_b32=secret, for_time=int(clock()))},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    assert 'id="done"' in r.text
    if key is not None:
        add_key(client, key)
        r = client.get("/enrol")
    r = client.post("/enrol/done", data={"csrf": csrf_of(r.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    return secret


def password_step(
    client: TestClient, username: str = "alice", password: str = PASSWORD
) -> httpx.Response:
    page = client.get("/login")
    r = client.post(
        "/login", data={"csrf": csrf_of(page.text), "username": username}, follow_redirects=True
    )
    return client.post(
        "/login/password",
        data={"csrf": csrf_of(r.text), "password": password},
        follow_redirects=False,
    )


def login(client: TestClient, secret: str, clock: FakeClock) -> None:
    r = password_step(client)
    assert r.status_code == 303
    assert r.headers["location"] == "/login/factor"
    page = client.get("/login/factor")
    clock.advance(30)
    r = post_totp(client, page.text, secret, clock)
    assert r.status_code == 303, r.text


def post_totp(client: TestClient, page_html: str, secret: str, clock: FakeClock) -> httpx.Response:
    """Submit the current TOTP code at ``/login/totp`` with the CSRF token of ``page_html``."""
    return client.post(
        "/login/totp",
        data={
            "csrf": csrf_of(page_html),
            "code": totp_at(secret_b32=secret, for_time=int(clock())),
        },
        follow_redirects=False,
    )


def register(
    client: TestClient, name: str, tier: str, members: list[str], networks: list[str] | None = None
) -> str:
    body = {
        "tier": tier,
        "members": [{"user": m} for m in members],
        "networks": networks if networks is not None else ["192.0.2.0/24"],
        "hub_url": f"https://{name}.example/hub/",
        "client": {
            "client_id": f"hub-{name}",
            "redirect_uris": [REDIRECT],
            "post_logout_redirect_uris": ["https://hub.example/bye"],
        },
    }
    r = client.put(f"/api/admin/enclaves/{name}", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    return str(r.json()["client_secret"])


def authorize(client: TestClient, client_id: str, pkce: Pkce, nonce: str = "n-1") -> httpx.Response:
    q = {
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile",
        "state": "st-1",
        "nonce": nonce,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    return client.get("/oidc/authorize?" + urllib.parse.urlencode(q), follow_redirects=False)


def test_invite_enrol_login_and_oidc_token(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    home = client.get("/")
    assert home.status_code == 200
    assert "alice" in home.text
    h = home.headers
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert "unsafe-inline" not in h["content-security-policy"]
    assert h["strict-transport-security"].startswith("max-age=")
    cookie = next(c for c in client.cookies.jar if c.name == "__Host-enclave-session")
    assert cookie.secure
    assert cookie.path == "/"
    assert not cookie.domain_specified
    assert cookie.has_nonstandard_attr("HttpOnly")
    secret_client = register(client, "gut-2026", "nbdc-standard", ["alice"])
    pkce = Pkce.new()
    r = authorize(client, "hub-gut-2026", pkce)
    assert r.status_code == 303, r.text
    loc = urllib.parse.urlparse(r.headers["location"])
    q = urllib.parse.parse_qs(loc.query)
    assert q["state"] == ["st-1"]
    code = q["code"][0]
    # Wrong verifier: refused, and the code is burned with it? No: PKCE failure leaves it used.
    tok = redeem(client, code, pkce, secret_client)
    assert tok.status_code == 200, tok.text
    body = tok.json()
    claims = id_tokens.decode(body["id_token"], client.get("/oidc/jwks").json(), now=clock())
    assert claims["iss"] == "https://localhost"
    assert claims["aud"] == "hub-gut-2026"
    assert claims["nonce"] == "n-1"
    assert set(claims["amr"]) >= {"pwd", "otp", "mfa"}
    assert claims["enclave_factors"] == ["knowledge", "possession"]
    assert claims["enclaves"] == ["gut-2026"]
    assert claims["acr"] == "urn:enclave:aal2"
    assert isinstance(claims["auth_time"], int)
    assert claims["roles"] == ["researcher"]  # relying parties (the audit UI) check roles
    # The code is single-use.
    again = redeem(client, code, pkce, secret_client)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    ui = client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ui.status_code == 200
    assert ui.json()["preferred_username"] == "alice"
    assert ui.json()["roles"] == ["researcher"]
    acts = sink.actions()
    for a in [
        "admin.user.invited",
        "auth.enrolment.password",
        "auth.enrolment.totp",
        "auth.invitation.accepted",
        "auth.factor.verified",
        "session.started",
        "admin.enclave.registered",
        "oidc.code.issued",
        "oidc.token.issued",
        "oidc.token.refused",
    ]:
        assert a in acts, a
    verified = [e for e in sink.events if e["action"] == "auth.factor.verified"]
    assert {e["details"]["category"] for e in verified} == {"knowledge", "possession"}
    assert all(e["source"] == "portal" for e in sink.events)


def test_password_only_session_never_gets_a_code(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    enrol_alice(client, clock)
    register(client, "gut-2026", "nbdc-standard", ["alice"])
    browser = new_browser(client)
    r = password_step(browser)
    assert r.status_code == 303
    r = authorize(browser, "hub-gut-2026", Pkce.new())
    assert r.status_code == 303
    assert r.headers["location"] == "/login/factor"
    assert "code=" not in r.headers["location"]
    # And the home page and enclave entry are out of reach too.
    assert browser.get("/", follow_redirects=False).headers["location"] == "/login"
    assert browser.get("/enclaves/gut-2026", follow_redirects=False).headers["location"] == "/login"


def test_pkce_is_required_and_checked(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    csec = register(client, "gut-2026", "nbdc-standard", ["alice"])
    q = {
        "client_id": "hub-gut-2026",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid",
        "state": "s",
    }
    r = client.get("/oidc/authorize?" + urllib.parse.urlencode(q), follow_redirects=False)
    assert "error=invalid_request" in r.headers["location"]
    assert "PKCE" in urllib.parse.unquote_plus(r.headers["location"])
    plain = {**q, "code_challenge": "x" * 43, "code_challenge_method": "plain"}
    r = client.get("/oidc/authorize?" + urllib.parse.urlencode(plain), follow_redirects=False)
    assert "error=invalid_request" in r.headers["location"]
    bad_redirect = {**q, "redirect_uri": "https://evil.example/cb"}
    r = client.get(
        "/oidc/authorize?" + urllib.parse.urlencode(bad_redirect), follow_redirects=False
    )
    assert r.status_code == 400
    assert "redirect_uri is not registered" in r.text
    pkce = Pkce.new()
    code = urllib.parse.parse_qs(
        urllib.parse.urlparse(authorize(client, "hub-gut-2026", pkce).headers["location"]).query
    )["code"][0]
    r = client.post(
        "/oidc/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": Pkce.new().verifier,
        },
        auth=("hub-gut-2026", csec),
    )
    assert r.status_code == 400
    assert "code_verifier does not match" in r.json()["error_description"]
    r = redeem(client, code, pkce, "wrong-secret")
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_high_tier_needs_webauthn_refused_with_clear_page(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    register(client, "genome-high", "nbdc-high", ["alice"])
    r = authorize(client, "hub-genome-high", Pkce.new())
    assert r.status_code == 303
    assert r.headers["location"] == "/enclaves/genome-high"
    page = client.get("/enclaves/genome-high")
    assert page.status_code == 401
    assert "WebAuthn" in page.text
    assert "enclave.stepup.required" in sink.actions()
    assert "oidc.code.issued" not in sink.actions()


def test_csrf_is_enforced_and_audited(env: tuple[Portal, MemoryAuditSink, TestClient]) -> None:
    _portal, sink, client = env
    client.get("/login")
    r = client.post("/login", data={"csrf": "forged", "username": "alice"})
    assert r.status_code == 403
    assert "did not come from this site" in r.text
    assert "web.csrf.rejected" in sink.actions()


def test_membership_removal_stops_tokens(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    csec = register(client, "gut-2026", "nbdc-standard", ["alice"])
    pkce = Pkce.new()
    code = urllib.parse.parse_qs(
        urllib.parse.urlparse(authorize(client, "hub-gut-2026", pkce).headers["location"]).query
    )["code"][0]
    register(client, "gut-2026", "nbdc-standard", [])
    r = redeem(client, code, pkce, csec)
    assert r.status_code == 400
    assert "no longer a member" in r.json()["error_description"]


def test_idle_timeout_ends_the_session(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    assert client.get("/", follow_redirects=False).status_code == 200
    clock.advance(15 * 60 + 1)
    assert client.get("/", follow_redirects=False).headers["location"] == "/login"
    ended = [e for e in sink.events if e["action"] == "session.ended"]
    assert ended
    assert ended[-1]["details"]["reason"] == "idle timeout"


def test_oversized_fields_are_rejected_and_audited(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    _portal, sink, client = env
    page = client.get("/login")
    r = client.post("/login", data={"csrf": csrf_of(page.text), "username": "u" * 5000})
    assert r.status_code == 422
    assert "username" in r.text
    ev = sink.events[-1]
    assert ev["action"] == "web.request.rejected"
    assert ev["details"]["field"] == "body.username"
    r = client.post("/login/webauthn", data={"csrf": "x", "credential": "{" * 70000})
    assert r.status_code == 422
    assert sink.events[-1]["details"]["field"] == "body.credential"


def test_a_forged_form_with_an_overlong_secret_is_audited_under_the_secret_field(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    """A post with no CSRF token and an over-long password or username is one 422;
    its audit event names the field that was being pushed, not the missing token."""
    _portal, sink, client = env
    client.get("/login")
    r = client.post("/login", data={"username": "u" * 5000})
    assert r.status_code == 422
    assert sink.events[-1]["details"]["field"] == "body.username"
    r = client.post("/login/password", data={"csrf": "x" * 500, "password": "p" * 5000})
    assert r.status_code == 422
    assert sink.events[-1]["details"]["field"] == "body.password"
    r = client.post("/logout", data={})
    assert r.status_code == 422
    assert sink.events[-1]["details"]["field"] == "body.csrf"


def test_japanese_pages(env: tuple[Portal, MemoryAuditSink, TestClient]) -> None:
    _portal, _sink, client = env
    r = client.get("/login", headers={"Accept-Language": "ja,en;q=0.5"})
    assert '<html lang="ja">' in r.text
    assert "ユーザー名" in r.text
    client.get("/lang/en")
    r = client.get("/login", headers={"Accept-Language": "ja"})
    assert '<html lang="en">' in r.text
    assert "Username" in r.text


def test_jwks_rotation_keeps_old_tokens_verifiable(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    portal, sink, client = env
    old = portal.keys.sign({"sub": "x"})
    r = client.post("/api/admin/keys/rotate", headers=ADMIN)
    assert r.status_code == 200
    new = portal.keys.sign({"sub": "y"})
    keys = client.get("/oidc/jwks").json()["keys"]
    assert len(keys) == 2
    assert r.json()["kid"] in {k["kid"] for k in keys}
    assert id_tokens.decode(old, {"keys": keys})["sub"] == "x"
    assert id_tokens.decode(new, {"keys": keys})["sub"] == "y"
    assert "admin.signing_key.rotated" in sink.actions()


def test_signing_keys_verify_refuses_what_it_did_not_sign(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    """The portal checks id_token_hint with its own keys: only RS256, only its kids,
    only an intact signature; each refusal is one sentence, never a library error."""
    import base64
    import json

    from cryptography.hazmat.primitives.asymmetric import rsa
    from joserfc import jwt
    from joserfc.jwk import OctKey, RSAKey

    portal, _, _ = env
    good = portal.keys.sign({"sub": "x", "sid": "s"})
    assert portal.keys.verify(good) == {"sub": "x", "sid": "s"}

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    head, body, sig = good.split(".")
    kid = json.loads(base64.urlsafe_b64decode(head + "=="))["kid"]
    stranger = RSAKey.import_key(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), {"kid": kid}
    )
    cases = {
        f"{head}.{b64({'sub': 'admin', 'sid': 's'})}.{sig}": "signature does not verify",
        jwt.encode({"alg": "RS256", "kid": kid}, {"sub": "x"}, stranger): "does not verify",
        jwt.encode({"alg": "RS256", "kid": "k9"}, {"sub": "x"}, stranger): "not signed by a key",
        f"{b64({'alg': 'none', 'kid': kid})}.{body}.": "not RS256",
        jwt.encode({"alg": "HS256", "kid": kid}, {"sub": "x"}, OctKey.import_key(b"k" * 32)): (
            "not RS256"
        ),
        "a.b": "not a compact JWS",
        "!!.??.**": "not valid base64url JSON",
        good + "." + sig: "not a compact JWS",
    }
    for token, reason in cases.items():
        with pytest.raises(InvalidInputError, match=reason):
            portal.keys.verify(token)


def test_forwarded_for_only_through_trusted_proxies(tmp_path: Path) -> None:
    from dataclasses import replace

    from auth import Portal as P

    portal, sink = make_portal(tmp_path)
    trusting = P(
        settings=replace(portal.settings, trusted_proxies=("10.0.0.0/8",)),
        sink=sink,
        store=portal.store,
        keyring=portal.keyring,
    )
    # Untrusted peer: its header is ignored.
    assert portal.client_ip(peer="198.51.100.9", forwarded_for=["192.0.2.1"]) == "198.51.100.9"
    # Trusted proxy: the nearest untrusted hop is the client, not a spoofed first entry.
    assert (
        trusting.client_ip(peer="10.1.2.3", forwarded_for=["203.0.113.66, 192.0.2.1"])
        == "192.0.2.1"
    )
    assert trusting.client_ip(peer="10.1.2.3", forwarded_for=["192.0.2.1, 10.9.9.9"]) == "192.0.2.1"
    assert trusting.client_ip(peer="10.1.2.3", forwarded_for=[]) == "10.1.2.3"


def test_hsts_only_when_served_over_tls(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tls_portal, _ = make_portal(tmp_path / "a", issuer="https://portal.example")
    plain_portal, _ = make_portal(tmp_path / "b", issuer="http://localhost:8000")
    # Behind a TLS-terminating proxy the app sees http, but the public URL is https.
    r = TestClient(create_app(portal=tls_portal), base_url="http://portal.example").get("/login")
    assert r.headers["strict-transport-security"].startswith("max-age=")
    r = TestClient(create_app(portal=plain_portal), base_url="http://localhost").get("/login")
    assert "strict-transport-security" not in r.headers
    assert r.headers["x-frame-options"] == "DENY"


@pytest.mark.postgres
def test_whole_flow_on_postgresql(tmp_path: Path, clock: FakeClock, postgres_url: str) -> None:
    import uuid
    from dataclasses import replace

    import psycopg

    from auth import Portal as P

    name = "flow_" + uuid.uuid4().hex[:10]
    with psycopg.connect(postgres_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    base, sink = make_portal(tmp_path, clock=clock)
    settings = replace(base.settings, store_url=postgres_url.replace("/postgres?", f"/{name}?"))
    portal = P(settings=settings, sink=sink, clock=clock)
    client = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("192.0.2.10", 50000)
    )
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    csec = register(client, "gut-2026", "nbdc-standard", ["alice"])
    pkce = Pkce.new()
    loc = authorize(client, "hub-gut-2026", pkce).headers["location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(loc).query)["code"][0]
    r = redeem(client, code, pkce, csec)
    assert r.status_code == 200, r.text
    assert "oidc.token.issued" in sink.actions()  # type: ignore[attr-defined]


def test_password_backoff_is_429_with_retry_after(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    enrol_alice(client, clock)
    statuses = [password_step(client, password="wrong wrong wrong").status_code for _ in range(6)]
    assert statuses[:4] == [401, 401, 401, 401]
    assert statuses[5] == 429
    r = password_step(client, password=PASSWORD)  # even the right password waits
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 30
    assert "Too many failed attempts" in r.text
    clock.advance(120)
    assert password_step(client).status_code == 303
    assert "auth.factor.refused" in sink.actions()


def test_error_sentences_in_japanese(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    enrol_alice(client, clock)
    client.get("/lang/ja")
    r = password_step(client, password="wrong wrong wrong")
    assert r.status_code == 401
    assert "ユーザー名またはパスワードが正しくありません。" in r.text


def test_session_id_and_csrf_are_renewed_at_sign_in(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    secret = enrol_alice(client, clock)
    r = password_step(client)
    assert r.status_code == 303
    before = client.cookies.get("__Host-enclave-session")
    page = client.get("/login/factor")
    old_csrf = csrf_of(page.text)
    clock.advance(30)
    r = client.post(
        "/login/totp",
        data={"csrf": old_csrf, "code": totp_at(secret_b32=secret, for_time=int(clock()))},
        follow_redirects=False,
    )
    assert r.status_code == 303
    after = client.cookies.get("__Host-enclave-session")
    assert after
    assert after != before
    home = client.get("/")
    assert home.status_code == 200
    assert csrf_of(home.text) != old_csrf
    # The pre-authentication cookie is worthless now.
    stale = TestClient(
        client.app, base_url="https://localhost", cookies={"__Host-enclave-session": before or ""}
    )
    assert stale.get("/", follow_redirects=False).headers["location"] == "/login"


@pytest.mark.parametrize(
    ("content", "ctype", "message"),
    [
        (
            "grant_type=authorization_code&code=a&code=b",
            "application/x-www-form-urlencoded",
            "appears twice",
        ),
        ('{"grant_type": "authorization_code"}', "application/json", "x-www-form-urlencoded"),
        ("code=" + "x" * 9000, "application/x-www-form-urlencoded", "larger than 8 KiB"),
        ("code=" + "x" * 300, "application/x-www-form-urlencoded", "longer than 200"),
        (b"code=\xff\xfe", "application/x-www-form-urlencoded", "UTF-8"),
    ],
)
def test_token_endpoint_refuses_malformed_bodies(
    env: tuple[Portal, MemoryAuditSink, TestClient], content: str | bytes, ctype: str, message: str
) -> None:
    _portal, _sink, client = env
    r = client.post("/oidc/token", content=content, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert message in r.json()["error_description"]


def test_token_endpoint_audits_a_malformed_client_id_without_echoing_it(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    _portal, sink, client = env
    r = client.post(
        "/oidc/token",
        data={"client_id": "\x1f", "client_secret": "x", "code": "c", "code_verifier": "v"},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    rejected = [e for e in sink.events if e["action"] == "web.request.rejected"]
    assert rejected
    assert rejected[-1]["details"]["field"] == "client_id"
    assert all("\x1f" not in str(e) for e in sink.events)  # never echoed into the log
