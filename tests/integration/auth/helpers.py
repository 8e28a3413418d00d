"""Helpers shared by the portal's integration and e2e tests: a portal on a temp dir."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from auth import (
    Argon2Params,
    FileAuditSink,
    KeyRing,
    MemoryAuditSink,
    Portal,
    PortalSettings,
    create_app,
)
from auth._audit import AuditSink
from auth._crypto import hash_token
from tests.harness.common import FakeClock
from tests.harness.softkey import SoftKey

ADMIN_TOKEN = "test-admin-token-" + "x" * 20
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHEAP_ARGON2 = Argon2Params(time_cost=1, memory_cost_kib=8192, parallelism=1)


def make_settings(tmp: Path, *, issuer: str = "https://localhost") -> PortalSettings:
    key_file = tmp / "keys"
    if not key_file.exists():
        key_file.write_text(KeyRing.generate().to_text())
    return PortalSettings(
        issuer=issuer,
        store_url=f"sqlite:///{tmp / 'identity.db'}",
        key_file=key_file,
        audit_target=f"unsafe-jsonl:{tmp / 'audit.jsonl'}",
        rp_id="localhost",
        admin_token_hash=hash_token(ADMIN_TOKEN),
        argon2=CHEAP_ARGON2,
    )


def make_portal(
    tmp: Path,
    *,
    clock: FakeClock | None = None,
    sink: AuditSink | None = None,
    issuer: str = "https://localhost",
) -> tuple[Portal, AuditSink]:
    settings = make_settings(tmp, issuer=issuer)
    sink = sink or MemoryAuditSink()
    kwargs = {"clock": clock} if clock is not None else {}
    return Portal(settings=settings, sink=sink, **kwargs), sink


def portal_env(tmp: Path, clock: FakeClock) -> tuple[Portal, MemoryAuditSink, TestClient]:
    """A portal with an in-memory audit sink, and a browser at 192.0.2.10 talking to it."""
    portal, sink = make_portal(tmp, clock=clock)
    assert isinstance(sink, MemoryAuditSink)
    client = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("192.0.2.10", 50000)
    )
    return portal, sink, client


def file_sink(tmp: Path) -> FileAuditSink:
    return FileAuditSink(path=tmp / "audit.jsonl")


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def totp_secret_of(html: str) -> str:
    m = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', html)
    assert m, "no TOTP secret on the page"
    return m.group(1)


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        v = secrets.token_urlsafe(48)
        c = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
        return cls(v, c)


def form_post(client: httpx.Client, url: str, page_html: str, **fields: str) -> httpx.Response:
    return client.post(url, data={"csrf": csrf_of(page_html), **fields})


def csrf_meta(html: str) -> str:
    """The CSRF token of the page's ``<meta name="csrf-token">`` (for the WebAuthn calls)."""
    m = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert m
    return m.group(1)


def add_key(client: httpx.Client, key: SoftKey) -> None:
    """Enrol ``key`` on the ``/enrol`` page; it then waits for an officer's approval."""
    page = client.get("/enrol")
    opts = client.post("/enrol/webauthn/options", headers={"X-CSRF-Token": csrf_meta(page.text)})
    assert opts.status_code == 200, opts.text
    r = client.post(
        "/enrol/webauthn",
        data={"csrf": csrf_of(page.text), "credential": json.dumps(key.register(opts.text))},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    assert "waiting for an officer" in r.text


def approve_pending(client: httpx.Client, username: str) -> list[str]:
    """The officer approves each of ``username``'s pending credentials, one by one (the
    API has no "approve all"); returns their kinds in order."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    (user,) = [
        u
        for u in client.get("/api/admin/users", headers=headers).json()
        if u["username"] == username
    ]
    kinds = []
    for c in user["credentials"]:
        if c["kind"] != "password" and not c["approved"]:
            url = f"/api/admin/users/{username}/credentials/{c['id']}/approve"
            assert client.post(url, headers=headers).status_code == 200
            kinds.append(str(c["kind"]))
    return kinds
