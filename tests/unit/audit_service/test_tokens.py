"""Intake tokens: issued once, stored hashed, one source each, rotatable, revocable."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from audit.tokens import RELOAD_SECONDS, SOURCES, TokenError, TokenStore


def test_a_token_authenticates_its_source_only_and_is_never_stored(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    issued = store.issue(source="portal", label="portal-1")
    assert store.authenticate(issued.token) == "portal"
    text = (tmp_path / "t.json").read_text()
    assert issued.token not in text
    # The secret is URL-safe base64 and may itself contain "_": split at most twice.
    secret = issued.token.split("_", 2)[2]
    assert len(secret) >= 40
    assert secret not in text
    assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),
        lambda t: t[:-5],
        lambda t: t.replace("eat_", "xat_"),
        lambda t: "",
        lambda t: "eat_" + "0" * 12 + "_" + t.split("_", 2)[2],
        lambda t: t + "x",
    ],
    ids=["last-char", "truncated", "prefix", "empty", "other-id", "suffix"],
)
def test_anything_but_the_exact_token_fails(tmp_path: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    store = TokenStore(path=tmp_path / "t.json")
    token = store.issue(source="hub", enclave="proj-a").token
    assert store.authenticate(mangle(token)) is None


def _one_reload_period_later() -> None:
    """Let ``RELOAD_SECONDS`` pass on the monotonic clock. The code guarantees the next
    lookup after that re-reads a changed file: an ordering on the clock, which a slow
    machine only makes longer (this waits for the clock, not for another thread)."""
    start = time.monotonic()
    while time.monotonic() - start <= RELOAD_SECONDS:
        time.sleep(RELOAD_SECONDS / 5)


def test_revoke_is_seen_by_another_instance_within_the_reload_period(tmp_path: Path) -> None:
    service_view = TokenStore(path=tmp_path / "t.json")
    issued = service_view.issue(source="controller")
    assert service_view.authenticate(issued.token) == "controller"
    TokenStore(path=tmp_path / "t.json").revoke(token_id=issued.record.id)
    _one_reload_period_later()
    assert service_view.authenticate(issued.token) is None


def test_rotation_gives_a_successor_and_a_grace_period(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    old = store.issue(source="workspace", enclave="proj-a")
    new = store.rotate(token_id=old.record.id, grace_seconds=3600)
    assert new.record.source == "workspace"
    assert store.authenticate(old.token) == "workspace"  # still inside the grace
    assert store.authenticate(new.token) == "workspace"
    newer = store.rotate(token_id=new.record.id, grace_seconds=0)
    assert store.authenticate(new.token) is None
    assert store.authenticate(newer.token) == "workspace"
    with pytest.raises(TokenError, match="no longer active"):
        store.rotate(token_id=new.record.id)


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    with pytest.raises(TokenError, match="unknown source 'browser'"):
        store.issue(source="browser")
    with pytest.raises(TokenError, match="no token with id 'nope'"):
        store.revoke(token_id="nope")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenError, match="unreadable"):
        TokenStore(path=tmp_path / "bad.json")


def test_an_unreadable_file_fails_closed(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    token = store.issue(source="portal").token
    assert store.authenticate(token) == "portal"
    (tmp_path / "t.json").write_text("garbage")
    _one_reload_period_later()
    assert store.authenticate(token) is None


def test_every_design_source_but_the_service_itself_can_hold_a_token() -> None:
    assert {"portal", "hub", "workspace", "controller", "cli"} == SOURCES


def test_no_token_can_be_issued_to_write_as_the_audit_service(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    with pytest.raises(TokenError, match="writes its own events"):
        store.issue(source="audit")
    with pytest.raises(TokenError, match="writes its own events"):
        store.issue(source="audit", enclave="proj-a")
    assert store.list() == []


@pytest.mark.parametrize("source", ["hub", "workspace"])
def test_an_enclave_component_token_cannot_be_issued_unbound(tmp_path: Path, source: str) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    with pytest.raises(TokenError, match="must be bound to its enclave"):
        store.issue(source=source)
    assert store.list() == []


@pytest.mark.parametrize(
    ("source", "enclave"), [("audit", None), ("workspace", None), ("hub", None)]
)
def test_a_stored_token_that_could_not_be_issued_today_is_refused(
    tmp_path: Path, source: str, enclave: str | None
) -> None:
    # An older token file may hold a token for source audit, or an unbound workspace
    # token: both fail closed.
    path = tmp_path / "t.json"
    issued = TokenStore(path=path).issue(source="portal")
    data = json.loads(path.read_text())
    data["tokens"][0].update(source=source, enclave=enclave)
    path.write_text(json.dumps(data))
    assert TokenStore(path=path).authenticate_record(issued.token) is None
    with pytest.raises(TokenError, match="cannot be rotated"):
        TokenStore(path=path).rotate(token_id=issued.record.id)


def test_an_enclave_token_keeps_its_enclave_through_rotation(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    issued = store.issue(source="workspace", enclave="proj-a")
    rec = TokenStore(path=tmp_path / "t.json").authenticate_record(issued.token)
    assert rec is not None
    assert (rec.source, rec.enclave) == ("workspace", "proj-a")
    new = store.rotate(token_id=issued.record.id, grace_seconds=0)
    assert new.record.enclave == "proj-a"
    with pytest.raises(TokenError, match="not an enclave name"):
        store.issue(source="hub", enclave="../etc")


def test_a_failing_record_callback_leaves_the_file_unchanged(tmp_path: Path) -> None:
    store = TokenStore(path=tmp_path / "t.json")
    first = store.issue(source="portal")
    before = (tmp_path / "t.json").read_bytes()

    def refuse(_rec: object) -> None:
        raise RuntimeError("the audit store is full")

    with pytest.raises(RuntimeError):
        store.issue(source="hub", enclave="proj-a", record=refuse)
    with pytest.raises(RuntimeError):
        store.rotate(token_id=first.record.id, record=refuse)
    with pytest.raises(RuntimeError):
        store.revoke(token_id=first.record.id, record=refuse)
    assert (tmp_path / "t.json").read_bytes() == before
    assert [r.id for r in store.list()] == [first.record.id]
    assert store.authenticate(first.token) == "portal"
