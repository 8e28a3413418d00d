"""Officers sign in to the audit UI through the portal's OpenID Connect provider.

Real components only: a portal process (``python -m auth serve``), an audit service
process (``python -m audit.service`` with ``--oidc-*``), the audit UI client
registered with the real ``enclave clients register`` command, and Debian's Chromium.
Users are invited through the portal's admin API and enrol password + TOTP in the
browser. Checked here:

* an officer signs in through the portal and every page they read is an
  ``audit.read`` event under their portal username;
* a researcher without the officer role is refused with a clear page, and the
  refusal is an ``auth.factor.failed`` (factor ``oidc``) event under their name;
* a tampered ``state``, a tampered ``nonce`` and a code issued to another client
  (another audience) are refused, each with its reason recorded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.auth.conftest import PortalProcess
from tests.e2e.portal_pages import redeem_invitation, sign_in
from tests.harness.audit_service import AuditEnv, ServiceProcess, free_port, make_audit_env

pytestmark = pytest.mark.browser
PASSWORD = "copper meadow signal 73"
ENCLAVE = str(Path(sys.executable).parent / "enclave")
OFFICER = "e2e-officer"
RESEARCHER = "e2e-researcher"


@dataclass
class Stack:
    portal: PortalProcess
    audit: ServiceProcess
    env: AuditEnv
    secrets: dict[str, str]  # username -> TOTP secret


def _portal_cli(portal: PortalProcess, *args: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "ENCLAVE_PORTAL_STORE": f"sqlite:///{portal.state / 'id.db'}",
        "ENCLAVE_PORTAL_KEY_FILE": str(portal.state / "keys"),
        "ENCLAVE_PORTAL_AUDIT_LOG": f"unsafe-jsonl:{portal.state / 'audit.jsonl'}",
    }
    r = subprocess.run([ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _enrol(page: Any, portal: PortalProcess, username: str, role: str) -> str:
    r = portal.admin("POST", "/api/admin/users", json={"username": username, "roles": [role]})
    assert r.status_code == 201, r.text
    return redeem_invitation(
        page, portal=portal.base, code=r.json()["invitation_code"], password=PASSWORD
    )


@pytest.fixture(scope="module")
def stack(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    portal = PortalProcess(state=tmp_path_factory.mktemp("portal")).start()
    audit_proc: ServiceProcess | None = None
    try:
        env = make_audit_env(tmp_path_factory.mktemp("audit") / "svc")
        port = free_port()
        callback = f"http://localhost:{port}/ui/oidc/callback"
        reg = _portal_cli(portal, "clients", "register", "audit-ui", "--redirect-uri", callback)
        assert reg["client_id"] == "audit-ui"
        secret_file = env.root / "oidc-client-secret"
        secret_file.write_text(reg["client_secret"] + "\n")
        secret_file.chmod(0o600)
        # Another tool whose registration also names the audit callback: a code issued
        # to it must not let anyone into the audit UI.
        _portal_cli(portal, "clients", "register", "other-tool", "--redirect-uri", callback)
        audit_proc = ServiceProcess(
            env,
            port=port,
            extra_args=(
                "--oidc-issuer",
                portal.base,
                "--oidc-client-id",
                "audit-ui",
                "--oidc-client-secret-file",
                str(secret_file),
                "--oidc-redirect-uri",
                callback,
                # password + TOTP: two categories, not phishing-resistant (see the doc)
                "--oidc-min-tier",
                "nbdc-standard",
            ),
        ).start()
        ctx = chromium.new_context(locale="en-US")
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        secrets = {
            OFFICER: _enrol(page, portal, OFFICER, "officer"),
            RESEARCHER: _enrol(page, portal, RESEARCHER, "researcher"),
        }
        ctx.close()
        yield Stack(portal=portal, audit=audit_proc, env=env, secrets=secrets)
    finally:
        if audit_proc is not None:
            audit_proc.stop()
        portal.stop()


def _sign_in_at_portal(page: Any, stack: Stack, username: str) -> None:
    """On the portal's login page (reached from the audit UI): password, then TOTP.

    Each user signs in once per module, with the code of the next time step (their
    enrolment used the current one; a used step is refused)."""
    sign_in(
        page,
        portal=stack.portal.base,
        user=username,
        password=PASSWORD,
        secret=stack.secrets[username],
    )


@pytest.fixture(scope="module")
def officer(stack: Stack, chromium: Any) -> Iterator[tuple[Any, Any]]:
    """The officer, signed in to the audit UI through the portal: (context, page)."""
    ctx = chromium.new_context(locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    base = stack.audit.browser_url
    page.goto(base + "/ui/")
    assert page.url == base + "/ui/login"
    assert page.inner_text("#login-portal") == "Sign in with the portal"
    assert "Bootstrap officer token" in page.content()
    page.click("#login-portal")
    _sign_in_at_portal(page, stack, OFFICER)
    page.wait_for_url(base + "/ui/")
    try:
        yield ctx, page
    finally:
        ctx.close()


def _events(stack: Stack, **filters: str) -> list[dict[str, Any]]:
    r = httpx.get(
        stack.audit.url + "/v1/events",
        params={**filters, "limit": "1000"},
        headers={"Authorization": f"Bearer {stack.env.officer_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


def _rewrite_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_officer_signs_in_through_the_portal_and_reads_are_recorded(
    stack: Stack, officer: tuple[Any, Any]
) -> None:
    ctx, page = officer
    base = stack.audit.browser_url
    assert page.inner_text(".who") == OFFICER
    session = {c["name"]: c for c in ctx.cookies()}["__Host-enclave_audit"]
    assert session["httpOnly"]
    assert session["secure"]
    assert session["sameSite"] == "Strict"
    page.goto(base + "/ui/search?action=auth.factor.verified")
    assert page.inner_text(".who") == OFFICER

    signed_in = [
        e
        for e in _events(stack, action="auth.factor.verified", source="audit")
        if e["actor"] == OFFICER
    ]
    assert len(signed_in) == 1
    assert signed_in[0]["details"]["factor"] == "oidc"
    reads = _events(stack, action="audit.read", actor=OFFICER)
    views = {e["details"]["view"] for e in reads}
    assert {"overview", "search"} <= views, views
    assert all(e["source"] == "audit" for e in reads)


def test_researcher_without_the_officer_role_is_refused_and_recorded(
    stack: Stack, chromium: Any
) -> None:
    ctx = chromium.new_context(locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    base = stack.audit.browser_url
    page.goto(base + "/ui/login")
    page.click("#login-portal")
    _sign_in_at_portal(page, stack, RESEARCHER)
    page.wait_for_selector("#refused")
    assert page.inner_text("#refused") == "Sign-in refused"
    reason = page.inner_text("#reason")
    assert f"{RESEARCHER} does not hold the officer role" in reason
    assert "__Host-enclave_audit" not in {c["name"] for c in ctx.cookies()}
    page.goto(base + "/ui/")
    assert page.url == base + "/ui/login"  # no session was created
    ctx.close()

    refused = [
        e
        for e in _events(stack, action="auth.factor.failed", source="audit")
        if e["actor"] == RESEARCHER
    ]
    assert len(refused) == 1
    assert refused[0]["outcome"] == "denied"
    assert refused[0]["details"]["factor"] == "oidc"
    assert "officer role" in refused[0]["details"]["reason"]
    assert _events(stack, action="audit.read", actor=RESEARCHER) == []


def _tamper(route: Any, **changes: str) -> None:
    """Let /ui/login/oidc answer, then change its redirect to the portal's authorize URL."""
    resp = route.fetch(max_redirects=0)
    headers = dict(resp.headers)
    headers["location"] = _rewrite_query(headers["location"], **changes)
    route.fulfill(response=resp, headers=headers)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        ({"state": "forged-state"}, "state does not match"),
        ({"nonce": "forged-nonce"}, "nonce does not match"),
        ({"client_id": "other-tool"}, "the portal refused the code"),
    ],
    ids=["state", "nonce", "audience"],
)
def test_tampered_sign_ins_are_refused_and_recorded(
    stack: Stack, chromium: Any, officer: tuple[Any, Any], tamper: dict[str, str], expected: str
) -> None:
    # A fresh browser that holds only the officer's portal session (single sign-on:
    # the portal does not ask again), not their audit UI session.
    portal_cookie = [c for c in officer[0].cookies() if c["name"] == "__Host-enclave-session"]
    assert portal_cookie
    ctx = chromium.new_context(locale="en-US")
    ctx.add_cookies(portal_cookie)
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    base = stack.audit.browser_url
    before = len(_events(stack, action="auth.factor.failed", source="audit"))
    page.route(lambda url: "/ui/login/oidc" in url, lambda route: _tamper(route, **tamper))
    page.goto(base + "/ui/login")
    page.click("#login-portal")
    page.wait_for_selector("#refused")
    assert expected in page.inner_text("#reason")
    page.unroute_all()
    page.goto(base + "/ui/")
    assert page.url == base + "/ui/login"  # no session was created
    ctx.close()
    failed = _events(stack, action="auth.factor.failed", source="audit")
    assert len(failed) == before + 1
    assert expected in failed[-1]["details"]["reason"]
    assert failed[-1]["details"]["factor"] == "oidc"
    assert failed[-1]["actor"] in {OFFICER, "officer:unknown"}
