"""Regression tests for the portal's security-review defects (one test per fix).

Each drives the real app (Starlette's TestClient, no mocks) on a real SQLite or
PostgreSQL identity store; the server raising would fail the test (TestClient
re-raises), so "no 5xx" is checked twice.
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal

from .helpers import ADMIN, FakeClock, Pkce, csrf_of
from .test_web_flows import (
    PASSWORD,
    authorize,
    enrol_alice,
    login,
    new_browser,
    password_step,
    redeem,
    register,
)


@pytest.mark.parametrize(
    "username",
    ["ali\x00ce", "bob\nroot", "eve\x1b[31m", "   ", "x" * 200, "\u202eevil", "-dash"],
    ids=["nul", "newline", "escape", "blank", "oversize", "bidi", "leading-dash"],
)
def test_malformed_login_username_is_answered_as_unknown_and_audited(
    env: tuple[Portal, MemoryAuditSink, TestClient], username: str
) -> None:
    _portal, sink, client = env
    unknown = password_step(client, username="nobody")
    assert unknown.status_code == 401
    before = len(sink.events)
    r = password_step(client, username=username)
    assert r.status_code == unknown.status_code
    assert "The username or password is not correct." in r.text
    new = sink.events[before:]
    rejected = [e for e in new if e["action"] == "web.request.rejected"]
    assert rejected, [e["action"] for e in new]
    assert rejected[0]["actor"] == "(malformed username)"
    assert rejected[0]["details"] == {
        "path": "/login",
        "field": "username",
        "reason": "malformed username",
    }
    failed = [e for e in new if e["action"] == "auth.factor.failed"]
    assert [e["actor"] for e in failed] == ["(malformed username)"]
    assert failed[0]["details"]["reason"] == "malformed username"
    # A bad CSRF token on the next step is audited under a safe actor too.
    r = client.post("/login/password", data={"csrf": "wrong", "password": "x" * 12})
    assert r.status_code == 403
    assert sink.events[-1]["actor"] == "anonymous"


def test_blank_login_username_is_4xx_and_audited(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    _portal, sink, client = env
    page = client.get("/login")
    before = len(sink.events)
    r = client.post("/login", data={"csrf": csrf_of(page.text), "username": ""})
    assert 400 <= r.status_code < 500 or r.status_code == 303
    if r.status_code == 303:
        r = client.get(r.headers["location"])
        r = client.post("/login/password", data={"csrf": csrf_of(r.text), "password": "y" * 12})
        assert r.status_code == 401
    assert any(e["action"] == "web.request.rejected" for e in sink.events[before:])


@pytest.mark.parametrize(
    "client_id", ["hub\x00x", "hub\nx", "a b", "\u00e9", "h" * 129], ids=str.__len__
)
def test_malformed_client_id_at_token_endpoint_is_invalid_client(
    env: tuple[Portal, MemoryAuditSink, TestClient], client_id: str
) -> None:
    _portal, sink, client = env
    # In the form body (the form's 128-character limit answers oversize first) ...
    r = client.post(
        "/oidc/token",
        data={"grant_type": "authorization_code", "client_id": client_id, "client_secret": "s"},
    )
    if len(client_id) <= 128:
        assert r.status_code == 401, r.text
        assert r.json()["error"] == "invalid_client"
        assert sink.events[-1]["action"] == "web.request.rejected"
        assert sink.events[-1]["details"]["field"] == "client_id"
    else:
        assert r.status_code == 400
    # ... and in HTTP Basic, where it is percent-decoded after the length check.
    quoted = "".join(f"%{b:02X}" for b in client_id.encode())
    basic = base64.b64encode(f"{quoted}:secret".encode()).decode()
    before = len(sink.events)
    r = client.post(
        "/oidc/token",
        data={"grant_type": "authorization_code"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    new = sink.events[before:]
    assert [e["action"] for e in new] == ["web.request.rejected"]
    assert new[0]["actor"] == "anonymous"


def test_invitation_race_loser_changes_nothing(
    env: tuple[Portal, MemoryAuditSink, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two submissions of one invitation: the loser's check passes, then the winner
    completes before the loser acts (forced interleaving on the real store)."""
    portal, sink, client = env
    r = client.post(
        "/api/admin/users", json={"username": "alice", "display_name": "Alice"}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    code = r.json()["invitation_code"]
    winner, loser = client, new_browser(client)
    forms = []
    for b in (winner, loser):  # both open the same invitation before either submits
        page = b.get("/invite")
        r = b.post("/invite", data={"csrf": csrf_of(page.text), "code": code})
        assert r.status_code == 200, r.text
        forms.append(r.text)
    pw_winner, pw_loser = PASSWORD, "quartz meadow ladle 77"
    winner_status: list[int] = []
    real_peek = portal.store.peek_invitation

    def peek_then_let_the_winner_finish(*, token_hash: str, now: float) -> str | None:
        found = real_peek(token_hash=token_hash, now=now)
        if not winner_status:
            monkeypatch.setattr(portal.store, "peek_invitation", real_peek)
            w = winner.post(
                "/invite/password",
                data={"csrf": csrf_of(forms[0]), "password": pw_winner, "password2": pw_winner},
                follow_redirects=False,
            )
            winner_status.append(w.status_code)
        return found

    monkeypatch.setattr(portal.store, "peek_invitation", peek_then_let_the_winner_finish)
    r = loser.post(
        "/invite/password",
        data={"csrf": csrf_of(forms[1]), "password": pw_loser, "password2": pw_loser},
        follow_redirects=False,
    )
    assert winner_status == [303]
    assert r.status_code == 409
    assert [e["action"] for e in sink.events].count("auth.enrolment.password") == 1
    assert password_step(new_browser(client), password=pw_loser).status_code == 401
    r = password_step(new_browser(client), password=pw_winner)
    assert r.status_code == 303
    assert r.headers["location"] == "/login/factor"


def signed_in_with_tokens(client: TestClient, clock: FakeClock) -> tuple[str, str]:
    """alice signed in through hub-gut-2026: (id_token, access_token)."""
    secret = enrol_alice(client, clock)
    login(client, secret, clock)
    client_secret = register(client, "gut-2026", "nbdc-standard", ["alice"])
    pkce = Pkce.new()
    r = authorize(client, "hub-gut-2026", pkce)
    assert r.status_code == 303, r.text
    code = urllib.parse.parse_qs(urllib.parse.urlparse(r.headers["location"]).query)["code"][0]
    tok = redeem(client, code, pkce, client_secret)
    assert tok.status_code == 200, tok.text
    return str(tok.json()["id_token"]), str(tok.json()["access_token"])


def test_logout_refuses_client_id_other_than_the_hint_audience(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    id_token, _access = signed_in_with_tokens(client, clock)
    register(client, "liver-2026", "nbdc-standard", ["alice"])
    q = {
        "id_token_hint": id_token,
        "client_id": "hub-liver-2026",
        "post_logout_redirect_uri": "https://hub.example/bye",
        "state": "s1",
    }
    r = client.get("/oidc/logout?" + urllib.parse.urlencode(q), follow_redirects=False)
    assert r.status_code == 400
    assert "id_token_hint" in r.text
    ev = sink.events[-1]
    assert ev["action"] == "web.request.rejected"
    assert ev["details"]["field"] == "client_id"
    assert client.get("/", follow_redirects=False).status_code == 200  # still signed in
    # The matching client (or none, taken from the hint) signs out and redirects.
    q["client_id"] = "hub-gut-2026"
    r = client.get("/oidc/logout?" + urllib.parse.urlencode(q), follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "https://hub.example/bye?state=s1"


def _userinfo(client: TestClient, access: str) -> int:
    return client.get("/oidc/userinfo", headers={"Authorization": f"Bearer {access}"}).status_code


def test_access_token_dies_with_its_session_at_logout(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    assert _userinfo(client, access) == 200
    home = client.get("/")
    r = client.post("/logout", data={"csrf": csrf_of(home.text)})
    assert r.status_code == 200
    assert _userinfo(client, access) == 401
    ev = sink.events[-1]
    assert ev["action"] == "oidc.token.refused"
    assert ev["actor"] == "alice"


def test_access_token_dies_with_its_session_at_officer_revocation(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    assert _userinfo(client, access) == 200
    sessions = client.get("/api/admin/sessions", headers=ADMIN).json()
    mine = [s["session"] for s in sessions if s["user_id"]]
    assert len(mine) == 1
    r = client.delete(f"/api/admin/sessions/{mine[0]}", headers=ADMIN)
    assert r.status_code == 204
    assert _userinfo(client, access) == 401


def test_dead_anonymous_and_ended_sessions_are_purged(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock, tmp_path: Path
) -> None:
    import sqlite3

    portal, _sink, client = env

    def rows() -> tuple[int, int]:
        with sqlite3.connect(tmp_path / "identity.db") as c:
            anon = c.execute("SELECT count(*) FROM sessions WHERE user_id IS NULL").fetchone()
            signed = c.execute("SELECT count(*) FROM sessions WHERE user_id IS NOT NULL")
            return int(anon[0]), int(signed.fetchone()[0])

    signed_in_with_tokens(client, clock)  # alice's live session must survive
    for _ in range(20):  # cookieless visitors: one row each
        assert new_browser(client).get("/login").status_code == 200
    anon, signed = rows()
    assert anon >= 20
    assert signed >= 1
    rules = portal.login_tier.session
    clock.advance(rules.idle_timeout_s - 5)
    assert client.get("/").status_code == 200  # alice stays active
    clock.advance(10)
    assert new_browser(client).get("/login").status_code == 200
    assert rows() == (1, signed)  # only the newest visitor; signed-in ones stay
    # Ended sessions are kept while a session could last, then purged.
    home = client.get("/")
    assert client.post("/logout", data={"csrf": csrf_of(home.text)}).status_code == 200
    clock.advance(rules.max_session_s + 61)
    assert new_browser(client).get("/login").status_code == 200
    assert rows() == (1, 0)  # alice's and the finished enrolment's ended sessions
