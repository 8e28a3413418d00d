"""A real OIDC client (authlib's OAuth2Client) completes code + PKCE against a real
portal process, with the user signing in through real Chromium; the ID token
verifies against the published JWKS and carries the claims hubs rely on. Then the
RP-initiated logout ends the portal session."""

from __future__ import annotations

import http.server
import secrets
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.harness import id_tokens

from .conftest import PortalProcess, free_port
from .test_browser import enrol, password_step, totp_for

pytestmark = pytest.mark.browser


class _Callback(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"callback received")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def rp_callback() -> Iterator[str]:
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Callback)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://localhost:{port}"
    srv.shutdown()
    srv.server_close()


def test_authlib_client_code_pkce_and_logout(
    chromium: Any, portal_server: PortalProcess, rp_callback: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.integrations.httpx_client import OAuth2Client

    redirect_uri = rp_callback + "/hub/oauth_callback"
    r = portal_server.admin(
        "PUT",
        "/api/admin/enclaves/oidc-std",
        json={
            "tier": "nbdc-standard",
            "members": [{"user": "oidc-user"}],
            # every tier admits only listed client networks (NBDC-U7 2.1 item 4)
            "networks": ["127.0.0.0/8", "::1/128"],
            "client": {
                "client_id": "hub-oidc-std",
                "redirect_uris": [redirect_uri],
                "post_logout_redirect_uris": [rp_callback + "/bye"],
            },
        },
    )
    assert r.status_code == 200, r.text
    client_secret = r.json()["client_secret"]
    disc = httpx.get(portal_server.base + "/.well-known/openid-configuration").json()
    assert disc["code_challenge_methods_supported"] == ["S256"]

    ctx = chromium.new_context()
    page = ctx.new_page()
    secret = enrol(page, portal_server, "oidc-user", webauthn=False)
    password_step(page, portal_server, "oidc-user")
    page.fill("#code", totp_for(secret, steps_ahead=1))
    page.click("#totp-submit")
    page.wait_for_selector("#sessions")

    client = OAuth2Client(
        client_id="hub-oidc-std",
        client_secret=client_secret,
        scope="openid profile",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(
        disc["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    assert "code_challenge=" in url
    page.goto(url)
    page.wait_for_url(redirect_uri + "?**")
    back = page.url
    assert urllib.parse.parse_qs(urllib.parse.urlparse(back).query)["state"] == [state]
    token = client.fetch_token(
        disc["token_endpoint"], authorization_response=back, code_verifier=verifier
    )
    claims = id_tokens.decode(
        token["id_token"],
        httpx.get(disc["jwks_uri"]).json(),
        audience="hub-oidc-std",
        issuer=disc["issuer"],
        now=time.time(),
    )
    assert claims["nonce"] == nonce
    assert claims["preferred_username"] == "oidc-user"
    assert "pwd" in claims["amr"]
    assert "otp" in claims["amr"]
    assert "mfa" in claims["amr"]
    assert claims["enclave_factors"] == ["knowledge", "possession"]
    assert claims["enclaves"] == ["oidc-std"]
    assert claims["acr"] == "urn:enclave:aal2"
    assert abs(claims["auth_time"] - claims["iat"]) < 600
    info = client.get(disc["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"]

    # RP-initiated logout with id_token_hint ends the session and returns to the RP.
    q = urllib.parse.urlencode(
        {
            "id_token_hint": token["id_token"],
            "state": "bye-1",
            "post_logout_redirect_uri": rp_callback + "/bye",
        }
    )
    page.goto(disc["end_session_endpoint"] + "?" + q)
    page.wait_for_url(rp_callback + "/bye?state=bye-1")
    page.goto(portal_server.base + "/")
    page.wait_for_url("**/login")
    ctx.close()
    acts = [e["action"] for e in portal_server.audit_events() if e["actor"] == "oidc-user"]
    assert "oidc.token.issued" in acts
    assert "session.ended" in acts
