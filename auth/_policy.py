"""The one place the portal talks to the tier catalog (``policies``).

Everything tier-related the portal uses goes through these names, so the decision
"which categories did this login prove, and do they satisfy the tier" is made by
``policies.evaluate_login`` and nowhere else.
"""

from __future__ import annotations

from policies import (
    Catalog,
    FactorCategory,
    FactorKind,
    LoginDecision,
    NetworkDecision,
    Tier,
    UnknownTierError,
    VerifiedFactor,
    acr_for_aal,
    check_source_network,
    evaluate_login,
    load_catalog,
)

__all__ = [
    "Catalog",
    "FactorCategory",
    "FactorKind",
    "LoginDecision",
    "NetworkDecision",
    "Tier",
    "UnknownTierError",
    "VerifiedFactor",
    "acr_for_aal",
    "check_source_network",
    "evaluate_login",
    "load_catalog",
    "needs_enrolment_approval",
]


def needs_enrolment_approval(tier: Tier) -> bool:
    """High and strong tiers count a credential only once an officer approved it.

    (Issue 5, Enrolment: "enrolments for high and strong tiers need an officer's
    approval before they count".) Those are the tiers that demand a
    phishing-resistant or biometric factor.
    """
    return bool(tier.login.require_phishing_resistant or tier.login.require_biometric)
