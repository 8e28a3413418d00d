"""X-Forwarded-For through the portal's HTTP routes: every header line is one list,
read from the right through trusted proxies only.

The attack (security review, issue #11 item 4): a client outside an enclave's
allow-list sends ``X-Forwarded-For: <an allow-listed address>``; the trusted proxy in
front of the portal appends a second header line with the address it really saw.
Reading only the first line lets the forged address in and records it as the client.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal, create_app

from .helpers import FakeClock, Pkce, make_portal
from .test_web_flows import REDIRECT, enrol_alice, login, register

PROXY = "10.0.0.5"  # the reverse proxy: the TCP peer of every request
ALLOWED = "192.0.2.50"  # in the enclave's allow-list (192.0.2.0/24)
OUTSIDER = "203.0.113.66"  # the attacker's real address


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def behind_proxy(tmp_path: Path, clock: FakeClock) -> tuple[MemoryAuditSink, TestClient]:
    """A portal trusting 10.0.0.0/8 as its proxies, reached through the proxy at 10.0.0.5;
    alice signed in (password and TOTP) and member of an nbdc-standard enclave whose
    allow-list is 192.0.2.0/24."""
    portal, sink = make_portal(tmp_path, clock=clock)
    portal = Portal(
        settings=replace(portal.settings, trusted_proxies=("10.0.0.0/8",)),
        sink=sink,
        store=portal.store,
        keyring=portal.keyring,
        clock=clock,
    )
    assert isinstance(sink, MemoryAuditSink)
    client = TestClient(create_app(portal=portal), base_url="https://localhost", client=(PROXY, 1))
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    register(client, "gut-2026", "nbdc-standard", ["alice"], networks=["192.0.2.0/24"])
    return sink, client


def _authorize(client: TestClient, forwarded: list[tuple[str, str]]) -> httpx.Response:
    q = {
        "client_id": "hub-gut-2026",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": Pkce.new().challenge,
        "code_challenge_method": "S256",
    }
    return client.get(
        "/oidc/authorize?" + urllib.parse.urlencode(q), headers=forwarded, follow_redirects=False
    )


def test_forged_allowlisted_address_in_an_earlier_forwarded_line_is_refused_entry(
    behind_proxy: tuple[MemoryAuditSink, TestClient],
) -> None:
    sink, client = behind_proxy
    # The client's forged line first, then the line the proxy appended.
    lines = [("X-Forwarded-For", ALLOWED), ("X-Forwarded-For", OUTSIDER)]
    r = _authorize(client, lines)
    assert r.status_code == 303
    assert r.headers["location"] == "/enclaves/gut-2026"  # no code
    page = client.get("/enclaves/gut-2026", headers=lines)
    assert page.status_code == 403
    assert f"{OUTSIDER} is not in any listed client network" in page.text
    assert "oidc.code.issued" not in sink.actions()
    [stepup] = [e for e in sink.events if e["action"] == "oidc.authorize.stepup"]
    [refused] = [e for e in sink.events if e["action"] == "enclave.entry.refused"]
    assert stepup["client_ip"] == refused["client_ip"] == OUTSIDER
    assert not [e for e in sink.events if e.get("client_ip") == ALLOWED]


def test_the_proxy_appending_to_one_line_or_adding_its_own_reads_the_same(
    behind_proxy: tuple[MemoryAuditSink, TestClient],
) -> None:
    sink, client = behind_proxy
    r = _authorize(client, [("X-Forwarded-For", f"{ALLOWED}, {OUTSIDER}")])
    assert r.headers["location"] == "/enclaves/gut-2026"
    # A real client in the allow-list, behind the proxy, still gets its code, on either form.
    for lines in (
        [("X-Forwarded-For", ALLOWED)],
        [("X-Forwarded-For", OUTSIDER), ("X-Forwarded-For", f"{ALLOWED}, 10.9.9.9")],
    ):
        r = _authorize(client, lines)
        assert r.status_code == 303
        assert "code=" in r.headers["location"], r.headers["location"]
    issued = [e for e in sink.events if e["action"] == "oidc.code.issued"]
    assert [e["client_ip"] for e in issued] == [ALLOWED, ALLOWED]
