"""Issue #11, account items: invitation codes (2), username enumeration (3), over-long
factors and invitation guessing (6, account half), the identity store's durability (10).

Each test is named for the attack it stops and drives the real app through its HTTP
routes (Starlette's TestClient, no mocks) on a real SQLite identity store.
"""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal, create_app, totp_at

from .helpers import ADMIN, FakeClock, csrf_of, totp_secret_of
from .test_web_flows import PASSWORD, login, new_browser, password_step

ATTACKER_PASSWORD = "attacker chose this one 99"


def invite(client: TestClient, username: str, roles: tuple[str, ...] = ("researcher",)) -> str:
    r = client.post(
        "/api/admin/users", json={"username": username, "roles": list(roles)}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return str(r.json()["invitation_code"])


def enter_code(browser: TestClient, code: str) -> httpx.Response:
    page = browser.get("/invite")
    return browser.post("/invite", data={"csrf": csrf_of(page.text), "code": code})


def set_password(browser: TestClient, page: httpx.Response, password: str) -> httpx.Response:
    return browser.post(
        "/invite/password",
        data={"csrf": csrf_of(page.text), "password": password, "password2": password},
        follow_redirects=True,
    )


def enrol_with(browser: TestClient, code: str, clock: FakeClock, password: str) -> str:
    """Accept ``code``, set ``password``, enrol TOTP and finish; the TOTP secret."""
    r = enter_code(browser, code)
    assert r.status_code == 200, r.text
    r = set_password(browser, r, password)
    assert r.status_code == 200, r.text
    secret = totp_secret_of(r.text)
    r = browser.post(
        "/enrol/totp",
        data={"csrf": csrf_of(r.text), "code": totp_at(secret_b32=secret, for_time=int(clock()))},
        follow_redirects=True,
    )
    assert r.status_code == 200, r.text
    r = browser.post("/enrol/done", data={"csrf": csrf_of(r.text)}, follow_redirects=False)
    assert r.status_code == 303
    return secret


def rejected(sink: MemoryAuditSink, since: int) -> list[dict[str, object]]:
    return [e for e in sink.events[since:] if e["action"] == "auth.invitation.rejected"]


# ----- item 2: invitation codes outlive their purpose ----------------------------------------
def test_stale_invitation_code_cannot_take_over_an_enrolled_account(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    """The review's reproduction: a stale first code, used an hour after the user
    enrolled with the second, must neither replace her password nor let the attacker
    enrol a factor and sign in."""
    portal, sink, officer = env
    first = invite(officer, "alice")
    second = invite(officer, "alice")  # a re-invite: the first code is cancelled
    alice = new_browser(officer)
    secret = enrol_with(alice, second, clock, PASSWORD)
    clock.advance(3600)
    attacker = TestClient(officer.app, base_url="https://localhost", client=("198.51.100.7", 1))
    before = len(sink.events)
    r = enter_code(attacker, first)
    assert r.status_code == 400
    assert "not valid" in r.text
    assert "new-password" not in r.text
    assert [e["details"] for e in rejected(sink, before)] == [{"reason": "unknown or cancelled"}]
    # Nothing changed: the attacker has no way to the enrolment page, alice's password
    # still works and the attacker's does not.
    assert attacker.get("/enrol", follow_redirects=False).status_code == 401
    assert password_step(attacker, "alice", ATTACKER_PASSWORD).status_code == 401
    clock.advance(30)
    login(alice, secret, clock)
    user = portal.user("alice")
    assert user.status == "active"
    assert [c.kind for c in portal.store.list_credentials(user_id=user.id)] == ["password", "totp"]


def test_invitation_held_open_before_a_reinvite_cannot_set_the_password_afterwards(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    """The attacker enters the first code (reaching the password form) before the
    officer re-invites; after alice enrols with the second code, submitting that form
    must change nothing."""
    portal, sink, officer = env
    first = invite(officer, "alice")
    attacker = TestClient(officer.app, base_url="https://localhost", client=("198.51.100.7", 1))
    held = enter_code(attacker, first)
    assert held.status_code == 200
    second = invite(officer, "alice")
    enrol_with(new_browser(officer), second, clock, PASSWORD)
    before = len(sink.events)
    r = set_password(attacker, held, ATTACKER_PASSWORD)
    assert r.status_code == 400
    assert rejected(sink, before), sink.actions()[before:]
    assert password_step(new_browser(officer), "alice", PASSWORD).status_code == 303
    assert password_step(attacker, "alice", ATTACKER_PASSWORD).status_code == 401
    assert portal.user("alice").status == "active"


def test_disabled_user_is_not_reactivated_by_her_outstanding_code(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    """Neither a code entered after the account was disabled nor one entered before
    (the password form already open) activates it."""
    portal, sink, officer = env
    code = invite(officer, "bob")
    held_open = new_browser(officer)
    held = enter_code(held_open, code)
    r = officer.post("/api/admin/users/bob/disable", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert [e["details"] for e in sink.events if e["action"] == "admin.user.disabled"] == [
        {"user": "bob", "sessions_revoked": 0, "invitations_cancelled": 1}
    ]
    before = len(sink.events)
    assert enter_code(new_browser(officer), code).status_code == 400
    assert set_password(held_open, held, ATTACKER_PASSWORD).status_code == 400
    assert len(rejected(sink, before)) == 2
    assert portal.user("bob").status == "disabled"
    assert portal.store.list_credentials(user_id=portal.user("bob").id) == []


def test_rebind_cancels_the_code_it_replaces(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, officer = env
    first = invite(officer, "alice")
    enrol_with(new_browser(officer), first, clock, PASSWORD)
    r = officer.post("/api/admin/users/alice/rebind", headers=ADMIN)
    assert r.status_code == 200, r.text
    second = r.json()["invitation_code"]
    r = officer.post("/api/admin/users/alice/rebind", headers=ADMIN)  # lost the code: again
    third = r.json()["invitation_code"]
    rebound = [e["details"] for e in sink.events if e["action"] == "admin.user.rebound"]
    assert rebound == [
        {"user": "alice", "invitations_cancelled": 0},
        {"user": "alice", "invitations_cancelled": 1},
    ]
    for stale in (first, second):
        assert enter_code(new_browser(officer), stale).status_code == 400
    enrol_with(new_browser(officer), third, clock, "a fresh start for her 7")
    assert portal.user("alice").status == "active"


def test_reinvite_with_new_roles_applies_them_so_event_and_account_agree(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, officer = env
    invite(officer, "carol", ("researcher",))
    invite(officer, "carol", ("officer", "pi"))
    assert portal.user("carol").roles == frozenset({"officer", "pi"})
    invited = [e["details"] for e in sink.events if e["action"] == "admin.user.invited"]
    assert [d["roles"] for d in invited] == [["researcher"], ["officer", "pi"]]
    assert [d["invitations_cancelled"] for d in invited] == [0, 1]
    # Once the account is in use, a re-invite is refused (re-bind is the way), audited.
    code = invite(officer, "dave")
    enrol_with(new_browser(officer), code, clock, PASSWORD)
    r = officer.post(
        "/api/admin/users", json={"username": "dave", "roles": ["admin"]}, headers=ADMIN
    )
    assert r.status_code == 409
    assert "exists already" in r.json()["detail"]
    assert portal.user("dave").roles == frozenset({"researcher"})
    last = sink.events[-1]
    assert (last["action"], last["outcome"]) == ("admin.user.invited", "failure")
    assert last["details"]["roles"] == ["admin"]


# ----- item 3: usernames enumerable through case-differing throttle keys ----------------------
def _failures_then_answer(client: TestClient, name: str) -> httpx.Response:
    for _ in range(5):
        r = password_step(client, name.upper(), "not the password at all")
        assert r.status_code in (401, 429), r.text
    return password_step(client, name, "not the password at all")


def _error_of(r: httpx.Response) -> str:
    start = r.text.index('class="error"')
    return r.text[start : r.text.index("<", start + 20)]


def test_case_differing_usernames_do_not_reveal_who_exists(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    """The review's reproduction: five failures as ``R.TANAKA``, then ``r.tanaka``
    answered 401 for an existing user and 429 for a missing one."""
    _portal, _sink, officer = env
    enrol_with(new_browser(officer), invite(officer, "r.tanaka"), clock, PASSWORD)
    existing = _failures_then_answer(new_browser(officer), "r.tanaka")
    missing = _failures_then_answer(new_browser(officer), "k.sato")
    assert existing.status_code == missing.status_code == 429
    assert existing.headers["retry-after"] == missing.headers["retry-after"]
    assert _error_of(existing) == _error_of(missing)


def test_one_username_normalisation_for_invite_login_admin_api_and_membership(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, officer = env
    code = invite(officer, "R.Tanaka@Company-A.example")
    assert portal.user("r.tanaka@company-a.example").username == "r.tanaka@company-a.example"
    # Another case of the same name is the same account: a re-invite, not a second user.
    again = invite(officer, "r.tanaka@company-a.EXAMPLE")
    assert [u.username for u in portal.store.list_users()] == ["r.tanaka@company-a.example"]
    assert enter_code(new_browser(officer), code).status_code == 400
    secret = enrol_with(new_browser(officer), again, clock, PASSWORD)
    browser = new_browser(officer)
    page = browser.get("/login")
    r = browser.post(
        "/login",
        data={"csrf": csrf_of(page.text), "username": "  R.TANAKA@company-a.example "},
        follow_redirects=True,
    )
    r = browser.post("/login/password", data={"csrf": csrf_of(r.text), "password": PASSWORD})
    assert r.status_code == 200, r.text  # followed to the second-factor page
    clock.advance(30)
    r = browser.post(
        "/login/totp",
        data={"csrf": csrf_of(r.text), "code": totp_at(secret_b32=secret, for_time=int(clock()))},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    body = {
        "tier": "nbdc-standard",
        "members": [{"user": "R.Tanaka@company-a.example"}],
        "networks": ["192.0.2.0/24"],
        "hub_url": "https://gut.example/hub/",
    }
    r = officer.put("/api/admin/enclaves/gut-2026", json=body, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["members"] == [{"user": "r.tanaka@company-a.example", "role": "researcher"}]
    assert "gut-2026" in browser.get("/").text
    r = officer.post("/api/admin/users/R.TANAKA@COMPANY-A.EXAMPLE/disable", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == "r.tanaka@company-a.example"
    actors = {e["actor"] for e in sink.events if e["action"].startswith("auth.")}
    assert actors <= {"r.tanaka@company-a.example", "anonymous"}, actors


# ----- item 6 (account half): over-long factors and invitation guessing ----------------------
def failures_since(
    portal: Portal, sink: MemoryAuditSink, since: int, *, kind: str
) -> tuple[list[str], int, int]:
    """The reasons of ``auth.factor.failed`` events since ``since``, the consecutive
    failures of alice's ``kind`` credential, and the failures counted against the
    second browser's address (192.0.2.11)."""
    reasons = [
        str(e["details"]["reason"])
        for e in sink.events[since:]
        if e["action"] == "auth.factor.failed"
    ]
    cred = portal.store.list_credentials(user_id=portal.user("alice").id, kind=kind)[0]
    ip = portal.store.count_ip_failures(ip="192.0.2.11", now=portal.clock(), window_s=900)
    return reasons, cred.failures, ip


def test_overlong_password_and_totp_code_are_audited_and_counted_like_wrong_ones(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, officer = env
    enrol_with(new_browser(officer), invite(officer, "alice"), clock, PASSWORD)
    browser = new_browser(officer)
    before = len(sink.events)
    for name in ("alice", "nobody"):
        r = password_step(browser, name, "p" * 1500)
        assert r.status_code == 401, r.text
        assert "The username or password is not correct." in r.text
    reasons = ["over-long password", "unknown user"]
    assert failures_since(portal, sink, before, kind="password") == (reasons, 1, 2)
    assert password_step(browser).status_code == 303
    page = browser.get("/login/factor")
    before = len(sink.events)
    r = browser.post("/login/totp", data={"csrf": csrf_of(page.text), "code": "1" * 40})
    assert r.status_code == 401
    assert failures_since(portal, sink, before, kind="totp") == (["malformed code"], 1, 3)


def test_overlong_form_fields_on_factor_forms_are_counted_against_the_address(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, officer = env
    browser = new_browser(officer)
    page = browser.get("/login")
    browser.post("/login", data={"csrf": csrf_of(page.text), "username": "alice"})
    r = browser.post("/login/password", data={"csrf": csrf_of(page.text), "password": "p" * 5000})
    assert r.status_code == 422
    assert sink.events[-1]["action"] == "web.request.rejected"
    assert portal.store.count_ip_failures(ip="192.0.2.11", now=clock(), window_s=900) == 1


def test_invitation_guessing_from_an_unknown_client_address_is_counted(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    portal, sink, _officer = env
    portal.factors.ip_max_failures = 3
    # A peer that is not an IP address (a Unix socket) and no trusted proxy: unknown.
    guesser = TestClient(
        create_app(portal=portal), base_url="https://localhost", client=("sock", 0)
    )
    for _ in range(3):
        assert enter_code(guesser, "guess-" + "x" * 30).status_code == 400
    assert portal.store.count_ip_failures(ip="unknown", now=clock(), window_s=900) == 3
    r = enter_code(guesser, "guess-" + "y" * 30)
    assert r.status_code == 429
    assert sink.events[-1]["action"] == "auth.factor.refused"
