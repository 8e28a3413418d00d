"""JupyterHub's GenericOAuthenticator, in a real JupyterHub process, signs a user in
through the portal (authorization code + PKCE), with real Chromium as the browser.

The hub is configured exactly as docs/portal.md tells operators to configure it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import PortalProcess, free_port
from .test_browser import PASSWORD, enrol, totp_for

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[3]
CHP = REPO / "node_modules" / ".bin" / "configurable-http-proxy"


@pytest.fixture(scope="module")
def hub(portal_server: PortalProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run 'make setup' (npm install)")
    d = tmp_path_factory.mktemp("hub")
    port, hub_port, api_port = free_port(), free_port(), free_port()
    base = f"http://localhost:{port}"
    r = portal_server.admin(
        "PUT",
        "/api/admin/enclaves/jh-std",
        json={
            "tier": "nbdc-standard",
            "members": [{"user": "jh-user"}],
            # every tier admits only listed client networks (NBDC-U7 2.1 item 4)
            "networks": ["127.0.0.0/8", "::1/128"],
            "hub_url": base + "/hub/",
            "client": {"client_id": "hub-jh-std", "redirect_uris": [base + "/hub/oauth_callback"]},
        },
    )
    assert r.status_code == 200, r.text
    secret = r.json()["client_secret"]
    p = portal_server.base
    (d / "jupyterhub_config.py").write_text(f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = "{base}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = ["{CHP}"]
c.JupyterHub.db_url = "sqlite:///{d / "hub.sqlite"}"
c.JupyterHub.cookie_secret_file = "{d / "cookie_secret"}"
c.JupyterHub.default_url = "/hub/home"
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = "hub-jh-std"
c.GenericOAuthenticator.client_secret = open("{d / "client_secret"}").read().strip()
c.GenericOAuthenticator.oauth_callback_url = "{base}/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = "{p}/oidc/authorize"
c.GenericOAuthenticator.token_url = "{p}/oidc/token"
c.GenericOAuthenticator.userdata_url = "{p}/oidc/userinfo"
c.GenericOAuthenticator.scope = ["openid", "profile"]
c.GenericOAuthenticator.username_claim = "preferred_username"
c.GenericOAuthenticator.enable_pkce = True
c.GenericOAuthenticator.allowed_users = {{"jh-user"}}
""")
    (d / "client_secret").write_text(secret)
    log = open(d / "hub.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(d / "jupyterhub_config.py")],
        cwd=d,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("jupyterhub exited:\n" + (d / "hub.log").read_text()[-3000:])
            try:
                if httpx.get(base + "/hub/api", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # poll interval
        else:
            raise RuntimeError("jupyterhub did not answer within 60 s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_generic_oauthenticator_signs_in_through_the_portal(
    chromium: Any, portal_server: PortalProcess, hub: str
) -> None:
    ctx = chromium.new_context()
    page = ctx.new_page()
    secret = enrol(page, portal_server, "jh-user", webauthn=False)
    page.goto(hub + "/hub/oauth_login")
    # Not signed in to the portal yet: it asks for username, password and a second factor,
    # then carries on with the hub's authorization request.
    page.wait_for_url("**/login")
    page.fill("#username", "jh-user")
    page.click("#submit")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url("**/login/factor")
    page.fill("#code", totp_for(secret, steps_ahead=1))
    page.click("#totp-submit")
    page.wait_for_url(hub + "/hub/home**", timeout=30000)
    assert "jh-user" in page.content()
    ctx.close()
    ev = [e for e in portal_server.audit_events() if e["actor"] == "jh-user"]
    issued = [e for e in ev if e["action"] == "oidc.token.issued"]
    assert issued
    assert issued[-1]["enclave"] == "jh-std"
    assert issued[-1]["details"]["client_id"] == "hub-jh-std"
