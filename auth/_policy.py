"""The one place the portal talks to the tier catalog (``policies``).

PROVISIONAL: until ``policies`` lands on main this module carries a local copy of
its public API (same names, same fields, same semantics as agreed with the lead),
so switching to ``from policies import ...`` touches only this file.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FactorCategory",
    "FactorKind",
    "LoginDecision",
    "Tier",
    "UnknownTierError",
    "VerifiedFactor",
    "evaluate_login",
    "load_catalog",
    "needs_enrolment_approval",
]


class UnknownTierError(KeyError):
    """No tier of that name in the catalog."""


class FactorKind(enum.Enum):
    PASSWORD = "password"  # noqa: S105  (a factor kind, not a secret)
    TOTP = "totp"
    WEBAUTHN = "webauthn"


class FactorCategory(enum.Enum):
    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    BIOMETRIC = "biometric"


@dataclass(frozen=True)
class LoginRules:
    min_categories: int
    require_phishing_resistant: bool
    require_biometric: bool
    require_device_bound: bool
    webauthn_user_verification: bool
    password_min_length: int = 12


@dataclass(frozen=True)
class SessionRules:
    idle_timeout_s: int = 900
    max_session_s: int = 43200


@dataclass(frozen=True)
class ThrottleRules:
    max_consecutive_failures: int = 100
    backoff_after_failures: int = 5
    backoff_initial_s: int = 30


@dataclass(frozen=True)
class NetworkRules:
    source_allowlist_required: bool = False


@dataclass(frozen=True)
class Tier:
    name: str
    login: LoginRules
    session: SessionRules = field(default_factory=SessionRules)
    throttle: ThrottleRules = field(default_factory=ThrottleRules)
    network: NetworkRules = field(default_factory=NetworkRules)


@dataclass(frozen=True)
class Catalog:
    tiers: Mapping[str, Tier]

    def get(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownTierError(f"unknown tier {name!r}") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self.tiers)


def load_catalog(overlay: Path | None = None) -> Catalog:
    """The built-in tiers (TIERS.md control matrix). ``overlay`` is not supported here."""
    if overlay is not None:
        raise ValueError("tier overlays need the policies package")
    aal2 = LoginRules(2, False, False, False, False)
    high = LoginRules(2, True, False, False, True)
    strong = LoginRules(2, True, True, True, True)
    return Catalog(
        tiers={
            "nbdc-standard": Tier("nbdc-standard", aal2),
            "nbdc-high": Tier("nbdc-high", high, network=NetworkRules(True)),
            "tommo-standard": Tier("tommo-standard", aal2),
            "tommo-strong": Tier("tommo-strong", strong, network=NetworkRules(True)),
        }
    )


@dataclass(frozen=True)
class VerifiedFactor:
    kind: FactorKind
    user_verified: bool = False
    biometric_attested: bool = False
    backup_eligible: bool = False
    biometric_amr: str | None = None


@dataclass(frozen=True)
class LoginDecision:
    allowed: bool
    categories: frozenset[FactorCategory]
    amr: tuple[str, ...]
    acr: str
    reasons: tuple[str, ...]


def evaluate_login(*, tier: Tier, factors: Iterable[VerifiedFactor]) -> LoginDecision:
    """Which categories the factors prove and whether they satisfy ``tier``."""
    rules = tier.login
    cats: set[FactorCategory] = set()
    amr: list[str] = []
    reasons: list[str] = []
    uv_unknown = False
    phishing_resistant = False
    for f in factors:
        if f.kind is FactorKind.PASSWORD:
            cats.add(FactorCategory.KNOWLEDGE)
            amr.append("pwd")
        elif f.kind is FactorKind.TOTP:
            cats.add(FactorCategory.POSSESSION)
            amr.append("otp")
        else:
            if rules.webauthn_user_verification and not f.user_verified:
                reasons.append(
                    "A security key without user verification does not count for this tier."
                )
                continue
            if rules.require_device_bound and f.backup_eligible:
                reasons.append(
                    "A synced passkey does not count for this tier; use a device-bound key."
                )
                continue
            cats.add(FactorCategory.POSSESSION)
            phishing_resistant = True
            amr.append("swk" if f.backup_eligible else "hwk")
            if f.user_verified:
                amr.append("user")
                if f.biometric_attested:
                    cats.add(FactorCategory.BIOMETRIC)
                    amr.append(f.biometric_amr or "fpt")
                else:
                    uv_unknown = True
    if uv_unknown and not ({FactorCategory.KNOWLEDGE, FactorCategory.BIOMETRIC} & cats):
        cats.add(FactorCategory.KNOWLEDGE)
    if len(cats) < rules.min_categories:
        reasons.append(
            f"This tier needs {rules.min_categories} different kinds of factor; {len(cats)} proven."
        )
    if rules.require_phishing_resistant and not phishing_resistant:
        reasons.append("This tier needs a WebAuthn security key or passkey.")
    if rules.require_biometric and FactorCategory.BIOMETRIC not in cats:
        reasons.append("This tier needs a biometric authenticator on the operator's allow-list.")
    allowed = not reasons or (
        len(cats) >= rules.min_categories
        and (phishing_resistant or not rules.require_phishing_resistant)
        and (FactorCategory.BIOMETRIC in cats or not rules.require_biometric)
    )
    if len(cats) >= 2:
        amr.append("mfa")
    return LoginDecision(
        allowed=allowed,
        categories=frozenset(cats),
        amr=tuple(dict.fromkeys(amr)),
        acr=f"urn:enclave:acr:{tier.name}" if allowed else "urn:enclave:acr:none",
        reasons=() if allowed else tuple(reasons),
    )


def needs_enrolment_approval(tier: Tier) -> bool:
    """High and strong tiers count a credential only once an officer approved it."""
    return tier.login.require_phishing_resistant or tier.login.require_biometric
