"""Throttling with a fake clock: back-off from the 5th failure, disabled at 100."""

from __future__ import annotations

import itertools

import pytest

from auth._audit import MemoryAuditSink
from auth._errors import FactorFailedError, ThrottledError
from auth._factors import Factors, totp_at
from auth._policy import load_catalog
from auth._store import IdentityStore

from .conftest import FakeClock


def _user_with_totp(factors: Factors, store: IdentityStore, clock: FakeClock) -> tuple[object, str]:
    user = store.create_user(
        user_id="u1",
        username="bob",
        display_name="Bob",
        roles=frozenset(),
        status="active",
        locale="en",
        now=clock(),
    )
    e = factors.begin_totp_enrolment(user=user, session_hash="s")
    factors.finish_totp_enrolment(
        user=user,
        sealed_secret_b64=e.sealed_secret_b64,
        session_hash="s",
        code=totp_at(secret_b32=e.secret_b32, for_time=int(clock())),
        client_ip=None,
    )
    return user, e.secret_b32


def test_backoff_grows_from_fifth_failure_then_disabled_at_100(
    factors: Factors, store: IdentityStore, clock: FakeClock, sink: MemoryAuditSink
) -> None:
    tier = load_catalog().get("nbdc-standard")
    user, secret = _user_with_totp(factors, store, clock)
    waits = []
    for i in range(1, 101):
        with pytest.raises(FactorFailedError):
            factors.verify_totp(
                user=user, code="000000", tier=tier, client_ip=f"198.51.100.{i % 200}"
            )
        cred = store.list_credentials(user_id="u1", kind="totp")[0]
        if i < 5:
            assert cred.locked_until == 0
        else:
            waits.append(cred.locked_until - clock())
            if i < 100:
                # Inside the back-off the right code is not even checked.
                right = totp_at(secret_b32=secret, for_time=int(clock()))
                with pytest.raises(ThrottledError):
                    factors.verify_totp(user=user, code=right, tier=tier, client_ip=None)
            clock.advance(cred.locked_until - clock() + 1)
    assert waits[0] == 30
    assert waits[1] == 60
    assert waits[2] == 120
    assert all(b >= a for a, b in itertools.pairwise(waits))
    cred = store.list_credentials(user_id="u1", kind="totp")[0]
    assert cred.disabled
    assert cred.failures == 100
    clock.advance(7200)
    with pytest.raises(ThrottledError, match="disabled"):
        factors.verify_totp(
            user=user,
            code=totp_at(secret_b32=secret, for_time=int(clock())),
            tier=tier,
            client_ip=None,
        )
    assert sink.actions().count("auth.factor.failed") == 100
    refused = [e for e in sink.events if e["action"] == "auth.factor.refused"]
    assert {e["details"]["reason"] for e in refused} == {"back-off", "disabled"}
    assert sink.actions().count("auth.authenticator.disabled") == 1
    failed = [e for e in sink.events if e["action"] == "auth.factor.failed"]
    assert failed[0]["details"]["category"] == "possession"


def test_success_resets_the_counter(
    factors: Factors, store: IdentityStore, clock: FakeClock
) -> None:
    tier = load_catalog().get("nbdc-standard")
    user, secret = _user_with_totp(factors, store, clock)
    for _ in range(4):
        with pytest.raises(FactorFailedError):
            factors.verify_totp(user=user, code="000000", tier=tier, client_ip=None)
    clock.advance(30)
    factors.verify_totp(
        user=user, code=totp_at(secret_b32=secret, for_time=int(clock())), tier=tier, client_ip=None
    )
    assert store.list_credentials(user_id="u1", kind="totp")[0].failures == 0


def test_per_ip_limit(factors: Factors, store: IdentityStore, clock: FakeClock) -> None:
    tier = load_catalog().get("nbdc-standard")
    for i in range(factors.ip_max_failures):
        with pytest.raises(FactorFailedError):
            factors.verify_password(
                username=f"nobody{i}", password="x" * 12, tier=tier, client_ip="203.0.113.9"
            )
    with pytest.raises(ThrottledError, match="your network"):
        factors.verify_password(
            username="someone", password="x" * 12, tier=tier, client_ip="203.0.113.9"
        )
    clock.advance(factors.ip_window_s + 1)
    with pytest.raises(FactorFailedError):
        factors.verify_password(
            username="someone", password="x" * 12, tier=tier, client_ip="203.0.113.9"
        )


def test_unknown_client_addresses_share_one_limited_bucket(
    factors: Factors, store: IdentityStore, clock: FakeClock
) -> None:
    # A request whose address is unknown must not escape the per-address limit.
    tier = load_catalog().get("nbdc-standard")
    for i in range(factors.ip_max_failures):
        with pytest.raises(FactorFailedError):
            factors.verify_password(
                username=f"nobody{i}", password="x" * 12, tier=tier, client_ip=None
            )
    with pytest.raises(ThrottledError, match="your network"):
        factors.verify_password(username="someone", password="x" * 12, tier=tier, client_ip=None)
    # known addresses keep their own buckets
    with pytest.raises(FactorFailedError):
        factors.verify_password(
            username="someone", password="x" * 12, tier=tier, client_ip="198.51.100.4"
        )
