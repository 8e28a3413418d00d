"""WebAuthn ceremonies against py_webauthn with a software authenticator:
UV handling per tier, device-bound refusal, and hostile payloads (4xx, audited)."""

from __future__ import annotations

import json

import pytest

from auth._app import status_of
from auth._audit import MemoryAuditSink
from auth._errors import FactorFailedError, InvalidInputError
from auth._factors import Factors
from auth._policy import FactorCategory, evaluate_login, load_catalog
from auth._store import IdentityStore, User
from tests.harness.softkey import SoftKey

from .conftest import FakeClock

CAT = load_catalog()
STD, HIGH, STRONG = CAT.get("nbdc-standard"), CAT.get("nbdc-high"), CAT.get("tommo-strong")


@pytest.fixture
def user(store: IdentityStore, clock: FakeClock) -> User:
    return store.create_user(
        user_id="u1",
        username="carol",
        display_name="Carol",
        roles=frozenset(),
        status="active",
        locale="en",
        now=clock(),
    )


def enrol(factors: Factors, user: User, key: SoftKey) -> None:
    opts = factors.begin_webauthn_registration(user=user, session_hash="s", user_verification=True)
    factors.finish_webauthn_registration(
        user=user,
        session_hash="s",
        credential_json=json.dumps(key.register(opts)),
        client_ip=None,
        session_aal=None,
    )


def assertion(factors: Factors, user: User, key: SoftKey, **kw: object) -> str:
    opts = factors.begin_webauthn_authentication(
        user=user, session_hash="s", user_verification=False
    )
    return json.dumps(key.get_assertion(opts, **kw))  # type: ignore[arg-type]


def test_uv_assertion_counts_for_high_tier(
    factors: Factors, user: User, store: IdentityStore
) -> None:
    key = SoftKey()
    enrol(factors, user, key)
    r = factors.finish_webauthn_authentication(
        user=user,
        session_hash="s",
        tier=HIGH,
        credential_json=assertion(factors, user, key),
        client_ip=None,
    )
    assert r.factor.user_verified
    (cred,) = store.list_credentials(user_id="u1", kind="webauthn")
    assert cred.sign_count == 1
    assert cred.aaguid == "01020304-0506-0708-0102-030405060708"


def test_no_uv_passes_at_aal2_but_fails_where_uv_required(
    factors: Factors, user: User, sink: MemoryAuditSink
) -> None:
    key = SoftKey()
    enrol(factors, user, key)
    r = factors.finish_webauthn_authentication(
        user=user,
        session_hash="s",
        tier=STD,
        credential_json=assertion(factors, user, key, uv=False),
        client_ip=None,
    )
    assert not r.factor.user_verified
    with pytest.raises(FactorFailedError, match="User verification is required"):
        factors.finish_webauthn_authentication(
            user=user,
            session_hash="s",
            tier=HIGH,
            credential_json=assertion(factors, user, key, uv=False),
            client_ip=None,
        )
    failed = [e for e in sink.events if e["action"] == "auth.factor.failed"]
    assert failed[-1]["details"]["factor"] == "webauthn"


def test_synced_passkey_is_refused_for_device_bound_tier(factors: Factors, user: User) -> None:
    key = SoftKey(backup_eligible=True)
    enrol(factors, user, key)
    r = factors.finish_webauthn_authentication(
        user=user,
        session_hash="s",
        tier=STRONG,
        credential_json=assertion(factors, user, key),
        client_ip=None,
    )
    assert r.factor.backup_eligible
    from auth._policy import FactorKind, VerifiedFactor

    d = evaluate_login(tier=STRONG, factors=[VerifiedFactor(kind=FactorKind.PASSWORD), r.factor])
    assert not d.allowed
    assert any("synced passkey" in x for x in d.reasons)
    d2 = evaluate_login(tier=STD, factors=[VerifiedFactor(kind=FactorKind.PASSWORD), r.factor])
    assert d2.allowed
    assert d2.categories == {FactorCategory.KNOWLEDGE, FactorCategory.POSSESSION}


@pytest.mark.parametrize(
    ("case", "msg"),
    [
        ("wrong-origin", "origin"),
        ("wrong-rp-id", "RP ID"),
        ("wrong-challenge", "challenge"),
        ("bad-signature", "signature"),
    ],
)
def test_forged_assertions_fail_and_are_audited(
    factors: Factors, user: User, sink: MemoryAuditSink, case: str, msg: str
) -> None:
    key = SoftKey()
    enrol(factors, user, key)
    opts = factors.begin_webauthn_authentication(
        user=user, session_hash="s", user_verification=False
    )
    kw: dict[str, str] = {}
    if case == "wrong-origin":
        kw["origin"] = "https://evil.example"
    elif case == "wrong-rp-id":
        kw["rp_id"] = "evil.example"
    elif case == "wrong-challenge":
        kw["challenge"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    payload = key.get_assertion(opts, **kw)
    if case == "bad-signature":
        payload["response"]["signature"] = payload["response"]["signature"][:-4] + "AAAA"
    with pytest.raises(FactorFailedError) as e:
        factors.finish_webauthn_authentication(
            user=user,
            session_hash="s",
            tier=STD,
            credential_json=json.dumps(payload),
            client_ip="192.0.2.7",
        )
    assert status_of(e.value) == 401
    assert msg.lower() in e.value.message.lower()
    ev = sink.events[-1]
    assert ev["action"] == "auth.factor.failed"
    assert ev["client_ip"] == "192.0.2.7"


def test_reused_and_expired_challenges(
    factors: Factors, user: User, sink: MemoryAuditSink, clock: FakeClock
) -> None:
    key = SoftKey()
    enrol(factors, user, key)
    payload = assertion(factors, user, key)
    factors.finish_webauthn_authentication(
        user=user, session_hash="s", tier=STD, credential_json=payload, client_ip=None
    )
    with pytest.raises(InvalidInputError, match="No WebAuthn ceremony is pending") as e:
        factors.finish_webauthn_authentication(
            user=user, session_hash="s", tier=STD, credential_json=payload, client_ip=None
        )
    assert status_of(e.value) == 400
    assert sink.events[-1]["action"] == "auth.webauthn.rejected"
    payload = assertion(factors, user, key)
    clock.advance(301)
    with pytest.raises(InvalidInputError, match="expired or was already used"):
        factors.finish_webauthn_authentication(
            user=user, session_hash="s", tier=STD, credential_json=payload, client_ip=None
        )
    assert sink.events[-1]["action"] == "auth.webauthn.rejected"


@pytest.mark.parametrize(
    ("payload", "msg"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "no valid credential id"),
        (json.dumps({"id": "x" * 20000}), "larger than"),
        (json.dumps({"id": "%%%"}), "not base64url"),
        (json.dumps({"id": "AAAA", "rawId": "AAAA"}), "not enrolled"),
    ],
)
def test_malformed_assertions_are_400_and_audited(
    factors: Factors, user: User, sink: MemoryAuditSink, payload: str, msg: str
) -> None:
    enrol(factors, user, SoftKey())
    factors.begin_webauthn_authentication(user=user, session_hash="s", user_verification=False)
    n = len(sink.events)
    with pytest.raises(InvalidInputError, match=msg) as e:
        factors.finish_webauthn_authentication(
            user=user, session_hash="s", tier=STD, credential_json=payload, client_ip=None
        )
    assert status_of(e.value) == 400
    assert len(sink.events) == n + 1
    assert sink.events[-1]["action"] == "auth.webauthn.rejected"
    assert sink.events[-1]["outcome"] == "failure"


@pytest.mark.parametrize(
    ("mutate", "msg"),
    [
        (lambda p: p.update(response={}), "refused"),
        (lambda p: p["response"].update(attestationObject="AAAA"), "refused"),
        (lambda p: p["response"].update(clientDataJSON="e30"), "refused"),
    ],
)
def test_malformed_registrations_are_400_and_audited(
    factors: Factors, user: User, sink: MemoryAuditSink, mutate: object, msg: str
) -> None:
    key = SoftKey()
    opts = factors.begin_webauthn_registration(user=user, session_hash="s", user_verification=True)
    payload = key.register(opts)
    mutate(payload)  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=msg):
        factors.finish_webauthn_registration(
            user=user,
            session_hash="s",
            credential_json=json.dumps(payload),
            client_ip=None,
            session_aal=None,
        )
    assert sink.events[-1]["action"] == "auth.enrolment.webauthn"
    assert sink.events[-1]["outcome"] == "failure"


BIO_AAGUID = bytes.fromhex("0badc0de0badc0de0badc0de0badc0de")
BIO_AAGUID_STR = "0badc0de-0bad-c0de-0bad-c0de0badc0de"


def _bio_factors(factors: Factors, roots: list[bytes]) -> Factors:
    from dataclasses import replace

    return replace(
        factors,
        webauthn=replace(
            factors.webauthn,
            biometric_aaguids={BIO_AAGUID_STR: "fpt"},
            attestation_roots={"packed": tuple(roots)},
        ),
    )


def test_attested_allow_listed_model_is_biometric(
    factors: Factors, user: User, store: IdentityStore
) -> None:
    from tests.harness.softkey import attestation_ca

    root, att_key, x5c = attestation_ca(BIO_AAGUID)
    f = _bio_factors(factors, [root])
    key = SoftKey(aaguid=BIO_AAGUID, attestation=(att_key, x5c))
    enrol(f, user, key)
    (cred,) = store.list_credentials(user_id="u1", kind="webauthn")
    assert cred.biometric_attested
    store.approve_credential(cred_id=cred.id)
    r = f.finish_webauthn_authentication(
        user=user,
        session_hash="s",
        tier=STRONG,
        credential_json=assertion(f, user, key),
        client_ip=None,
    )
    assert r.factor.biometric_attested
    assert r.factor.biometric_amr == "fpt"
    from auth._policy import FactorKind, VerifiedFactor

    d = evaluate_login(tier=STRONG, factors=[VerifiedFactor(kind=FactorKind.PASSWORD), r.factor])
    assert d.allowed, d.reasons
    assert FactorCategory.BIOMETRIC in d.categories
    assert "fpt" in d.amr


@pytest.mark.parametrize(
    "forgery", ["self-attestation", "untrusted-root", "no-aaguid-extension", "other-aaguid"]
)
def test_claimed_biometric_without_proof_is_not_biometric(
    factors: Factors, user: User, store: IdentityStore, forgery: str
) -> None:
    from tests.harness.softkey import attestation_ca

    root, att_key, x5c = attestation_ca(
        BIO_AAGUID, with_aaguid_extension=forgery != "no-aaguid-extension"
    )
    f = _bio_factors(factors, [root])
    if forgery == "self-attestation":
        key = SoftKey(aaguid=BIO_AAGUID, attestation="self")
    elif forgery == "untrusted-root":
        _other_root, other_key, other_x5c = attestation_ca(BIO_AAGUID)
        key = SoftKey(aaguid=BIO_AAGUID, attestation=(other_key, other_x5c))
    elif forgery == "other-aaguid":
        root2, k2, x2 = attestation_ca(bytes(16))
        f = _bio_factors(factors, [root2])
        key = SoftKey(aaguid=BIO_AAGUID, attestation=(k2, x2))
    else:
        key = SoftKey(aaguid=BIO_AAGUID, attestation=(att_key, x5c))
    if forgery == "untrusted-root":
        # The chain does not lead to the operator's root: the registration is refused.
        with pytest.raises(InvalidInputError, match="registration was refused"):
            enrol(f, user, key)
        return
    enrol(f, user, key)
    (cred,) = store.list_credentials(user_id="u1", kind="webauthn")
    assert cred.aaguid == BIO_AAGUID_STR
    assert not cred.biometric_attested
