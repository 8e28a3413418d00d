"""TOTP: RFC 6238 Appendix B vectors, the +-1 step window, and single use per step."""

from __future__ import annotations

import base64

import pytest

from auth._errors import FactorFailedError
from auth._factors import Factors, totp_at
from auth._policy import FactorKind, load_catalog
from auth._store import IdentityStore

from .conftest import FakeClock

SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
# RFC 6238 Appendix B, Table 1: (time, SHA-1, SHA-256, SHA-512)
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("t", "c1", "c256", "c512"), VECTORS)
def test_rfc6238_appendix_b(t: int, c1: str, c256: str, c512: str) -> None:
    for digest, want in (("sha1", c1), ("sha256", c256), ("sha512", c512)):
        secret = base64.b32encode(SEEDS[digest]).decode()
        assert totp_at(secret_b32=secret, for_time=t, digits=8, digest=digest) == want


def _enrol(factors: Factors, store: IdentityStore, clock: FakeClock) -> tuple[object, str]:
    user = store.create_user(
        user_id="u1",
        username="alice",
        display_name="Alice",
        roles=frozenset({"researcher"}),
        status="active",
        locale="en",
        now=clock(),
    )
    e = factors.begin_totp_enrolment(user=user, session_hash="s1")
    code = totp_at(secret_b32=e.secret_b32, for_time=int(clock()))
    factors.finish_totp_enrolment(
        user=user,
        sealed_secret_b64=e.sealed_secret_b64,
        session_hash="s1",
        code=code,
        client_ip=None,
    )
    return user, e.secret_b32


def test_window_is_plus_minus_one_step_and_each_step_is_single_use(
    factors: Factors, store: IdentityStore, clock: FakeClock
) -> None:
    tier = load_catalog().get("nbdc-standard")
    user, secret = _enrol(factors, store, clock)
    clock.advance(90)
    # The code of the previous step is accepted ...
    prev = totp_at(secret_b32=secret, for_time=int(clock()) - 30)
    r = factors.verify_totp(user=user, code=prev, tier=tier, client_ip="192.0.2.1")
    assert r.factor.kind is FactorKind.TOTP
    assert r.category == "possession"
    # ... but never again, nor is any older one.
    with pytest.raises(FactorFailedError, match="already used"):
        factors.verify_totp(user=user, code=prev, tier=tier, client_ip="192.0.2.1")
    # The next step is fine; two steps ahead is not.
    nxt = totp_at(secret_b32=secret, for_time=int(clock()) + 30)
    factors.verify_totp(user=user, code=nxt, tier=tier, client_ip="192.0.2.1")
    far = totp_at(secret_b32=secret, for_time=int(clock()) + 90)
    with pytest.raises(FactorFailedError, match="not correct"):
        factors.verify_totp(user=user, code=far, tier=tier, client_ip="192.0.2.1")


def test_enrolment_code_cannot_be_replayed_for_login(
    factors: Factors, store: IdentityStore, clock: FakeClock
) -> None:
    tier = load_catalog().get("nbdc-standard")
    user, secret = _enrol(factors, store, clock)
    code = totp_at(secret_b32=secret, for_time=int(clock()))
    with pytest.raises(FactorFailedError, match="already used"):
        factors.verify_totp(user=user, code=code, tier=tier, client_ip=None)


def test_secret_is_sealed_at_rest(factors: Factors, store: IdentityStore, clock: FakeClock) -> None:
    _user, secret = _enrol(factors, store, clock)
    (cred,) = store.list_credentials(user_id="u1", kind="totp")
    assert secret.encode() not in cred.secret
    assert base64.b32decode(secret) not in cred.secret
