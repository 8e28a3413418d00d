"""Ending one user's sessions through the admin API (what the controller does on a
quarantine or suspension), against the real app on a real store, refusals included."""

from __future__ import annotations

import urllib.parse

from fastapi.testclient import TestClient

from auth import MemoryAuditSink, Portal

from .helpers import ADMIN, ADMIN_TOKEN, FakeClock
from .test_security_review import _userinfo, signed_in_with_tokens

END = "/api/admin/users/{}/sessions"


def test_a_closed_enclaves_member_is_signed_out_and_their_hub_token_dies(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    assert _userinfo(client, access) == 200
    assert client.get("/", follow_redirects=False).status_code == 200
    reason = "enclave gut-2026 quarantined"
    r = client.delete(
        END.format("alice") + "?" + urllib.parse.urlencode({"reason": reason}), headers=ADMIN
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"username": "alice", "sessions_ended": 1}
    assert _userinfo(client, access) == 401
    assert client.get("/", follow_redirects=False).status_code != 200
    ended = [e for e in sink.events if e["action"] == "session.ended"]
    assert [(e["actor"], e["details"]["reason"]) for e in ended] == [("admin-api", reason)]
    # Nothing left to end: a second call ends none and says so.
    again = client.delete(END.format("alice"), headers=ADMIN)
    assert again.json() == {"username": "alice", "sessions_ended": 0}


def test_a_wrong_admin_token_cannot_end_sessions_and_is_not_echoed(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    forged = "forged-" + ADMIN_TOKEN[::-1]
    r = client.delete(END.format("alice"), headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert forged not in r.text
    assert r.json() == {"detail": "The admin token is not valid."}
    assert sink.events[-1]["action"] == "admin.auth.failed"
    assert _userinfo(client, access) == 200  # nothing ended
    listing = client.get("/api/admin/sessions?username=alice", headers={"Authorization": "x"})
    assert listing.status_code == 401


def test_ending_the_sessions_of_an_unknown_user_is_404_in_one_sentence_and_audited(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    for call in (
        lambda: client.delete(END.format("mallory"), headers=ADMIN),
        lambda: client.get("/api/admin/sessions?username=mallory", headers=ADMIN),
    ):
        before = len(sink.events)
        r = call()
        assert r.status_code == 404
        assert r.json() == {"detail": "No user named 'mallory'."}
        (event,) = sink.events[before:]
        assert event["action"] == "web.request.rejected"
        assert event["outcome"] == "failure"
        assert event["details"]["field"] == "username"
    assert _userinfo(client, access) == 200


def test_an_oversized_reason_is_refused_before_anything_ends(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, sink, client = env
    _id_token, access = signed_in_with_tokens(client, clock)
    r = client.delete(END.format("alice") + "?reason=" + "x" * 129, headers=ADMIN)
    assert r.status_code == 422
    assert sink.events[-1]["action"] == "web.request.rejected"
    assert _userinfo(client, access) == 200


def test_one_users_sessions_are_listed_without_the_others(
    env: tuple[Portal, MemoryAuditSink, TestClient], clock: FakeClock
) -> None:
    _portal, _sink, client = env
    signed_in_with_tokens(client, clock)
    client.post("/api/admin/users", json={"username": "bob"}, headers=ADMIN)
    mine = client.get("/api/admin/sessions?username=alice", headers=ADMIN).json()
    assert len(mine) == 1
    assert client.get("/api/admin/sessions?username=bob", headers=ADMIN).json() == []


def test_one_enclave_is_read_back_with_its_hub_client_but_never_its_secret(
    env: tuple[Portal, MemoryAuditSink, TestClient],
) -> None:
    _portal, _sink, client = env
    body = {
        "tier": "nbdc-standard",
        "members": [{"user": "Alice"}],
        "networks": ["192.0.2.0/24"],
        "client": {"client_id": "hub-gut-2026", "redirect_uris": ["https://h.example/cb"]},
    }
    put = client.put("/api/admin/enclaves/gut-2026", json=body, headers=ADMIN)
    secret = put.json()["client_secret"]
    r = client.get("/api/admin/enclaves/gut-2026?client_id=hub-gut-2026", headers=ADMIN)
    assert r.status_code == 200
    got = r.json()
    assert got["members"] == [{"user": "alice", "role": "researcher"}]
    assert (got["client_id"], got["redirect_uris"]) == ("hub-gut-2026", ["https://h.example/cb"])
    assert got["client_secret"] is None
    assert secret not in r.text
    missing = client.get("/api/admin/enclaves/other", headers=ADMIN)
    assert (missing.status_code, missing.json()) == (404, {"detail": "No enclave named 'other'."})
    # Another enclave's client is not shown as this one's.
    assert (
        client.get("/api/admin/enclaves/gut-2026?client_id=nope", headers=ADMIN).json()["client_id"]
        is None
    )
