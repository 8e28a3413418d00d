"""The shared decisions: factors -> tier, token claims -> tier, client address -> tier."""

from __future__ import annotations

import itertools

import pytest

from policies import (
    TIER_IDS,
    FactorCategory,
    FactorKind,
    VerifiedFactor,
    check_source_network,
    evaluate_claims,
    evaluate_login,
    load_catalog,
)

CATALOG = load_catalog()
K, P, B = FactorCategory.KNOWLEDGE, FactorCategory.POSSESSION, FactorCategory.BIOMETRIC

# Every kind of factor the portal can verify, by a short name.
FACTORS = {
    "pwd": VerifiedFactor(FactorKind.PASSWORD),
    "totp": VerifiedFactor(FactorKind.TOTP, approved=True),
    "key": VerifiedFactor(FactorKind.WEBAUTHN, approved=True),  # no UV: a plain key tap
    # PIN or biometric, unknown which
    "key+uv": VerifiedFactor(FactorKind.WEBAUTHN, user_verified=True, approved=True),
    "passkey+uv": VerifiedFactor(
        FactorKind.WEBAUTHN, user_verified=True, backup_eligible=True, approved=True
    ),
    "bio": VerifiedFactor(
        FactorKind.WEBAUTHN,
        user_verified=True,
        biometric_attested=True,
        biometric_amr="fpt",
        approved=True,
    ),
    "bio-synced": VerifiedFactor(
        FactorKind.WEBAUTHN,
        user_verified=True,
        biometric_attested=True,
        backup_eligible=True,
        approved=True,
    ),
}

Y, N = True, False
# login -> allowed in (nbdc-standard, nbdc-high, tommo-standard, tommo-strong), and the
# categories proven at the standard tiers
TABLE = {
    ("pwd",): ((N, N, N, N), {K}),
    ("totp",): ((N, N, N, N), {P}),
    ("key",): ((N, N, N, N), {P}),
    ("key+uv",): ((N, N, N, N), {P}),
    ("bio",): ((N, N, N, N), {P, B}),
    ("pwd", "totp"): ((Y, N, Y, N), {K, P}),
    ("pwd", "key"): ((Y, N, Y, N), {K, P}),
    ("pwd", "key+uv"): ((Y, Y, Y, N), {K, P}),
    ("pwd", "passkey+uv"): ((Y, Y, Y, N), {K, P}),
    ("pwd", "bio"): ((Y, Y, Y, Y), {K, P, B}),
    ("pwd", "bio-synced"): ((Y, Y, Y, N), {K, P, B}),
    ("totp", "key"): ((N, N, N, N), {P}),  # two possessions are one category
    ("totp", "key+uv"): ((Y, Y, Y, N), {P}),  # UV adds "knowledge or biometric"
    ("totp", "passkey+uv"): ((Y, Y, Y, N), {P}),
    ("totp", "bio"): ((Y, Y, Y, Y), {P, B}),
    ("totp", "bio-synced"): ((Y, Y, Y, N), {P, B}),
    ("key", "bio"): ((N, N, N, N), {P, B}),  # two WebAuthn keys are one kind of factor
    ("pwd", "totp", "key"): ((Y, N, Y, N), {K, P}),
    ("pwd", "totp", "key+uv"): ((Y, Y, Y, N), {K, P}),
    ("pwd", "totp", "bio"): ((Y, Y, Y, Y), {K, P, B}),
}


@pytest.mark.parametrize("tier_id", TIER_IDS)
@pytest.mark.parametrize("login", sorted(TABLE), ids="+".join)
def test_login_table(tier_id, login):
    allowed, categories = TABLE[login]
    decision = evaluate_login(tier=CATALOG.get(tier_id), factors=[FACTORS[f] for f in login])
    assert decision.allowed is allowed[TIER_IDS.index(tier_id)], decision.reasons
    if decision.allowed:
        assert decision.reasons == ()
    else:
        assert decision.reasons, "a refusal must say why"
    # The categories column is what the standard tiers prove; the strict tiers do
    # not even count a UV-less key or (tommo-strong) a synced one.
    if tier_id.endswith("-standard"):
        assert decision.categories == categories


ALL_LOGINS = [combo for n in range(4) for combo in itertools.combinations(sorted(FACTORS), n)]


@pytest.mark.parametrize("tier_id", TIER_IDS)
def test_every_combination_of_factors_is_decided_consistently(tier_id):
    tier = CATALOG.get(tier_id)
    for login in ALL_LOGINS:
        d = evaluate_login(tier=tier, factors=[FACTORS[f] for f in login])
        # Adding a factor never turns an entry into a refusal.
        for extra in FACTORS:
            bigger = evaluate_login(tier=tier, factors=[FACTORS[f] for f in (*login, extra)])
            assert not d.allowed or bigger.allowed, (login, extra)
        # The hub, seeing only the token, reaches the same answer as the portal.
        claims = evaluate_claims(
            tier=tier,
            enclave_factors=[c.value for c in d.categories],
            amr=d.amr,
            acr=d.acr,
            approved=d.approved,
        )
        assert claims.allowed is d.allowed, (login, d, claims)
        # A refusal always says why; an entry never reaches below AAL2.
        assert d.allowed or d.reasons
        assert not d.allowed or d.aal >= 2


def test_stricter_tiers_admit_a_subset_of_logins():
    chain = ["nbdc-standard", "nbdc-high", "tommo-strong"]
    for login in ALL_LOGINS:
        factors = [FACTORS[f] for f in login]
        allowed = [evaluate_login(tier=CATALOG.get(t), factors=factors).allowed for t in chain]
        assert allowed == sorted(allowed, reverse=True), (login, allowed)


@pytest.mark.parametrize(
    ("login", "amr", "acr"),
    [
        (("pwd",), ("pwd",), "urn:enclave:aal1"),
        (("pwd", "totp"), ("pwd", "otp", "mfa"), "urn:enclave:aal2"),
        (("pwd", "key+uv"), ("pwd", "hwk", "user", "mfa"), "urn:enclave:aal3"),
        (("totp", "passkey+uv"), ("otp", "swk", "user", "mfa"), "urn:enclave:aal2"),
        (("pwd", "bio"), ("pwd", "hwk", "user", "fpt", "mfa"), "urn:enclave:aal3"),
    ],
)
def test_amr_and_acr_follow_rfc8176_and_nist(login, amr, acr):
    d = evaluate_login(tier=CATALOG.get("nbdc-standard"), factors=[FACTORS[f] for f in login])
    assert (d.amr, d.acr) == (amr, acr)


def test_uv_is_never_counted_as_biometric_without_attestation():
    d = evaluate_login(
        tier=CATALOG.get("tommo-strong"), factors=[FACTORS["pwd"], FACTORS["key+uv"]]
    )
    assert not d.allowed
    assert B not in d.categories
    assert any("biometric" in r for r in d.reasons)


def test_a_key_without_uv_is_not_counted_where_uv_is_required():
    d = evaluate_login(tier=CATALOG.get("nbdc-high"), factors=[FACTORS["pwd"], FACTORS["key"]])
    assert not d.allowed
    assert d.reasons[0].startswith("the security key did not verify the user (UV)")
    assert d.categories == {K}


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": FactorKind.PASSWORD, "user_verified": True},
        {"kind": FactorKind.TOTP, "backup_eligible": True},
        {"kind": FactorKind.WEBAUTHN, "biometric_attested": True},
        {"kind": FactorKind.WEBAUTHN, "user_verified": True, "biometric_amr": "fpt"},
        {
            "kind": FactorKind.WEBAUTHN,
            "user_verified": True,
            "biometric_attested": True,
            "biometric_amr": "pwd",
        },
        {"kind": "password"},
    ],
)
def test_impossible_factors_are_refused_at_construction(bad):
    with pytest.raises(ValueError, match=r"\w+"):
        VerifiedFactor(**bad)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (
            {
                "enclave_factors": ["knowledge", "telepathy"],
                "amr": ["pwd", "otp", "mfa"],
                "acr": "urn:enclave:aal2",
            },
            "unknown factor category",
        ),
        (
            {
                "enclave_factors": ["knowledge", "possession"],
                "amr": ["pwd", "otp", "mfa"],
                "acr": "aal2",
            },
            "assurance level 'aal2' is unknown",
        ),
        (
            {"enclave_factors": ["knowledge"], "amr": ["pwd"], "acr": "urn:enclave:aal1"},
            "2 distinct factor categories",
        ),
    ],
)
def test_claims_that_do_not_meet_the_tier_are_refused(claims, reason):
    d = evaluate_claims(tier=CATALOG.get("nbdc-standard"), approved=True, **claims)
    assert not d.allowed
    assert any(reason in r for r in d.reasons), d.reasons


@pytest.mark.parametrize(
    ("tier_id", "allowlist", "ip", "allowed"),
    [
        # NBDC-U7 2.1 item 4: an allow-list at every tier; required and empty: fail closed
        ("nbdc-standard", [], "203.0.113.9", False),
        ("tommo-standard", [], "203.0.113.9", False),
        ("nbdc-high", [], "203.0.113.9", False),
        ("tommo-strong", [], "192.0.2.10", False),
        ("nbdc-high", ["192.0.2.0/24"], "192.0.2.10", True),
        ("nbdc-high", ["192.0.2.0/24"], "192.0.3.10", False),
        ("nbdc-standard", ["192.0.2.0/24"], "192.0.3.10", False),  # listed: enforced
        ("nbdc-high", ["2001:db8::/32"], "2001:db8::1", True),
        ("nbdc-high", ["2001:db8::/32"], "192.0.2.10", False),
        ("nbdc-high", ["192.0.2.0/24"], "not-an-ip", False),
        ("nbdc-standard", ["192.0.2.0/24"], None, False),  # unknown address, listed networks
        ("nbdc-standard", [], None, False),
        ("nbdc-high", [], None, False),
        ("nbdc-high", ["not-a-network"], "192.0.2.10", False),
    ],
)
def test_source_networks(tier_id, allowlist, ip, allowed):
    d = check_source_network(tier=CATALOG.get(tier_id), allowlist=allowlist, client_ip=ip)
    assert d.allowed is allowed
    assert d.reason


@pytest.mark.parametrize("tier_id", TIER_IDS)
def test_entry_from_a_public_pc_is_refused_when_no_access_terminal_is_listed(tier_id):
    # NBDC-U7 2.1 item 4 (solely from data servers or data access terminals) and 2.3
    # item 3 (no public PCs): an enclave with no listed network admits nobody.
    d = check_source_network(tier=CATALOG.get(tier_id), allowlist=[], client_ip="203.0.113.9")
    assert d.allowed is False
    assert "none is listed" in d.reason


# Issue #11 item 1: the officer UI admitted a sign-in its tier forbids.


def test_a_key_without_uv_never_gives_aal3():
    d = evaluate_login(tier=CATALOG.get("nbdc-standard"), factors=[FACTORS["pwd"], FACTORS["key"]])
    assert d.allowed
    assert (d.amr, d.acr) == (("pwd", "hwk", "mfa"), "urn:enclave:aal2")


def test_an_unapproved_key_is_not_counted_where_the_tier_needs_approval():
    key = VerifiedFactor(FactorKind.WEBAUTHN, user_verified=True)  # not approved
    d = evaluate_login(tier=CATALOG.get("nbdc-high"), factors=[FACTORS["pwd"], key])
    assert not d.allowed
    assert any("waiting for an officer's approval" in r for r in d.reasons)
    standard = evaluate_login(tier=CATALOG.get("nbdc-standard"), factors=[FACTORS["pwd"], key])
    assert standard.allowed
    assert standard.approved is False


PHISHED = {"enclave_factors": ["knowledge", "possession"], "amr": ["pwd", "hwk", "mfa"]}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({**PHISHED, "acr": "urn:enclave:aal3", "approved": True}, "claims AAL3"),
        ({**PHISHED, "acr": "urn:enclave:aal2", "approved": True}, "did not verify the user"),
        (
            {**PHISHED, "amr": ["pwd", "hwk", "user", "mfa"], "acr": "urn:enclave:aal3"}
            | {"approved": False},
            "officer approved",
        ),
    ],
)
def test_audit_ui_tier_refuses_a_phished_password_plus_own_key(claims, reason):
    d = evaluate_claims(tier=CATALOG.get("nbdc-high"), **claims)
    assert not d.allowed
    assert any(reason in r for r in d.reasons), d.reasons


def test_biometric_claims_need_uv_and_a_biometric_amr():
    claims = {
        "enclave_factors": ["knowledge", "possession", "biometric"],
        "acr": "urn:enclave:aal3",
        "approved": True,
    }
    tier = CATALOG.get("tommo-strong")
    ok = evaluate_claims(tier=tier, amr=["pwd", "hwk", "user", "fpt", "mfa"], **claims)
    assert ok.allowed, ok.reasons
    bare = evaluate_claims(tier=tier, amr=["pwd", "hwk", "user", "mfa"], **claims)
    assert not bare.allowed
    assert "this tier needs an attested biometric factor" in bare.reasons
