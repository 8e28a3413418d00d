"""The tier catalog: what each security tier must enforce, and why.

Data files plus pure decision functions; read by ``audit``, ``auth`` and
``controller`` so that a tier's rules live in exactly one place. This package
imports nothing of ours and performs no I/O beyond reading its own catalog files.
"""

from ._catalog import TIER_IDS, Catalog, load_catalog
from ._control import Control, Stricter
from ._decisions import (
    BIOMETRIC_AMR,
    FactorCategory,
    FactorKind,
    IPNetwork,
    LoginDecision,
    NetworkDecision,
    VerifiedFactor,
    acr_for_aal,
    check_source_network,
    client_address,
    evaluate_claims,
    evaluate_login,
    parse_proxies,
)
from ._groups import CONTROL_GROUPS, PodSecurityLevel, ScreenOutputAction
from ._model import Tier
from ._sources import SOURCES
from .errors import CatalogError, PolicyError, UnknownTierError

__all__ = [
    "BIOMETRIC_AMR",
    "CONTROL_GROUPS",
    "SOURCES",
    "TIER_IDS",
    "Catalog",
    "CatalogError",
    "Control",
    "FactorCategory",
    "FactorKind",
    "IPNetwork",
    "LoginDecision",
    "NetworkDecision",
    "PodSecurityLevel",
    "PolicyError",
    "ScreenOutputAction",
    "Stricter",
    "Tier",
    "UnknownTierError",
    "VerifiedFactor",
    "acr_for_aal",
    "check_source_network",
    "client_address",
    "evaluate_claims",
    "evaluate_login",
    "load_catalog",
    "parse_proxies",
]
