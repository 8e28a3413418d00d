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
    client_address,
    evaluate_login,
    load_catalog,
    parse_proxies,
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
    "client_address",
    "evaluate_login",
    "load_catalog",
    "parse_proxies",
]
