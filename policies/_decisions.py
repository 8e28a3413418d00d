"""Pure decision functions shared by the portal and every hub authenticator.

One answer, in one place, to "do these verified factors satisfy this tier?",
"do these token claims satisfy this tier?" and "may this client address enter?".
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from ._model import Tier

__all__ = [
    "BIOMETRIC_AMR",
    "FactorCategory",
    "FactorKind",
    "IPNetwork",
    "LoginDecision",
    "NetworkDecision",
    "VerifiedFactor",
    "acr_for_aal",
    "check_source_network",
    "client_address",
    "evaluate_claims",
    "evaluate_login",
    "parse_proxies",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FactorKind(enum.StrEnum):
    """The authenticators the portal verifies."""

    PASSWORD = "password"  # noqa: S105 (a factor kind, not a secret)
    TOTP = "totp"
    WEBAUTHN = "webauthn"


class FactorCategory(enum.StrEnum):
    """The categories of NBDC-U7 §3 ①; the values go into the ``enclave_factors`` claim."""

    KNOWLEDGE = "knowledge"
    POSSESSION = "possession"
    BIOMETRIC = "biometric"


#: RFC 8176 values that name a biometric modality.
BIOMETRIC_AMR = frozenset({"fpt", "face", "iris", "retina", "vbm"})


def acr_for_aal(aal: int) -> str:
    """The ``acr`` claim value naming an NIST-63B4 authenticator assurance level."""
    return f"urn:enclave:aal{aal}"


@dataclass(frozen=True)
class VerifiedFactor:
    """One factor the portal has verified in this login.

    ``user_verified``: the WebAuthn UV flag was set and checked.
    ``approved``: an officer approved the credential (a password needs no approval;
    the tier's ``enrolment_approval`` decides whether an unapproved one counts).
    ``biometric_attested``: the authenticator's attested AAGUID is on the operator's
    allow-list of models whose only user-verification method is biometric (TIERS.md:
    UV alone never proves a biometric). ``backup_eligible``: the credential may be
    synced (a passkey), so it is not device-bound.
    """

    kind: FactorKind
    user_verified: bool = False
    biometric_attested: bool = False
    backup_eligible: bool = False
    biometric_amr: str | None = None
    approved: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FactorKind):
            raise ValueError(f"unknown factor kind {self.kind!r}")
        webauthn_only = self.user_verified or self.biometric_attested or self.backup_eligible
        if self.kind is not FactorKind.WEBAUTHN and webauthn_only:
            raise ValueError("user_verified, biometric_attested and backup_eligible are WebAuthn's")
        if self.biometric_attested and not self.user_verified:
            raise ValueError("a biometric is only attested through user verification (UV)")
        if self.biometric_amr is not None and (
            not self.biometric_attested or self.biometric_amr not in BIOMETRIC_AMR
        ):
            raise ValueError("biometric_amr needs biometric_attested and an RFC 8176 biometric")


@dataclass(frozen=True)
class LoginDecision:
    """The outcome of :func:`evaluate_login` or :func:`evaluate_claims`."""

    allowed: bool
    categories: frozenset[FactorCategory]
    category_count: int
    aal: int
    amr: tuple[str, ...]
    acr: str
    reasons: tuple[str, ...] = field(default=())
    #: Every counted factor that needs an officer's approval had it (the
    #: ``enclave_approved`` claim).
    approved: bool = False


def evaluate_login(*, tier: Tier, factors: Sequence[VerifiedFactor]) -> LoginDecision:
    """Decide whether the factors verified in one login satisfy ``tier``.

    The caller MUST pass only factors it has verified cryptographically in this
    login (a failed factor is not passed at all) and MUST refuse entry unless
    ``allowed`` is true.

    1. Drop what the tier does not count: WebAuthn without UV where the tier
       requires UV; a backup-eligible (synced) WebAuthn key where the tier requires
       device-bound keys; a TOTP or WebAuthn credential no officer approved where the
       tier needs approval. Each dropped factor gives a reason.
    2. Prove categories: password -> knowledge; TOTP -> possession; WebAuthn ->
       possession, plus biometric when attested.
    3. WebAuthn UV without an attested biometric proves "knowledge or biometric,
       unknown which": it counts as one more category only when neither knowledge
       nor biometric is already proven (so it can never be counted twice).
    4. Compare with the tier: factors, categories, phishing resistance,
       biometric, assurance level. AAL3 needs two categories and a device-bound
       WebAuthn key that verified the user (NIST-63B4; TIERS.md), so ``acr`` never
       says more than the counted factors prove.
    """
    dropped: list[str] = []
    reasons: list[str] = []
    login = tier.login
    counted: list[VerifiedFactor] = []
    # 1.
    for f in factors:
        if f.kind is FactorKind.WEBAUTHN:
            if login.webauthn_user_verification and not f.user_verified:
                dropped.append(
                    "the security key did not verify the user (UV), so this tier does not count it"
                )
                continue
            if login.require_device_bound and f.backup_eligible:
                dropped.append(
                    "a synced passkey is not device-bound, so this tier does not count it"
                )
                continue
        if login.enrolment_approval and f.kind is not FactorKind.PASSWORD and not f.approved:
            dropped.append(
                f"the {f.kind.value} credential is waiting for an officer's approval, "
                "so this tier does not count it"
            )
            continue
        counted.append(f)
    # 2.
    categories: set[FactorCategory] = set()
    uv_unknown = False
    for f in counted:
        if f.kind is FactorKind.PASSWORD:
            categories.add(FactorCategory.KNOWLEDGE)
        elif f.kind is FactorKind.TOTP:
            categories.add(FactorCategory.POSSESSION)
        else:
            categories.add(FactorCategory.POSSESSION)
            if f.biometric_attested:
                categories.add(FactorCategory.BIOMETRIC)
            elif f.user_verified:
                uv_unknown = True
    # 3.
    category_count = len(categories)
    if uv_unknown and not categories & {FactorCategory.KNOWLEDGE, FactorCategory.BIOMETRIC}:
        category_count += 1
    kinds = {f.kind for f in counted}
    webauthn = [f for f in counted if f.kind is FactorKind.WEBAUTHN]
    phishing_resistant = bool(webauthn)
    device_bound_uv = any(f.user_verified and not f.backup_eligible for f in webauthn)
    aal = _aal(category_count, device_bound_uv)
    # 4.
    if len(kinds) < login.min_factors:
        reasons.append(
            f"this tier needs {login.min_factors} separately verified factors; {len(kinds)} counted"
        )
    if category_count < login.min_categories:
        reasons.append(
            f"this tier needs {login.min_categories} distinct factor categories "
            f"(biometric, possession, knowledge); {category_count} proven"
        )
    if login.require_phishing_resistant and not phishing_resistant:
        reasons.append("this tier needs a phishing-resistant factor (a WebAuthn security key)")
    if login.require_biometric and FactorCategory.BIOMETRIC not in categories:
        reasons.append(
            "this tier needs a biometric factor: WebAuthn with user verification on an "
            "authenticator model the operator lists as biometric"
        )
    if aal < login.aal:
        reasons.append(
            f"this tier needs assurance level AAL{login.aal}; this login reached AAL{aal}"
        )
    amr = _amr(counted, category_count)
    return LoginDecision(
        allowed=not reasons,
        categories=frozenset(categories),
        category_count=category_count,
        aal=aal,
        amr=amr,
        acr=acr_for_aal(aal),
        reasons=tuple(dropped + reasons),
        approved=all(f.approved for f in counted if f.kind is not FactorKind.PASSWORD),
    )


def _aal(category_count: int, device_bound_uv: bool) -> int:
    if category_count >= 2 and device_bound_uv:
        return 3
    if category_count >= 2:
        return 2
    return 1


def _amr(counted: Sequence[VerifiedFactor], category_count: int) -> tuple[str, ...]:
    amr: list[str] = []
    for f in counted:
        if f.kind is FactorKind.PASSWORD:
            amr.append("pwd")
        elif f.kind is FactorKind.TOTP:
            amr.append("otp")
        else:
            amr.append("swk" if f.backup_eligible else "hwk")
            if f.user_verified:
                amr.append("user")
            if f.biometric_amr:
                amr.append(f.biometric_amr)
    if category_count >= 2:
        amr.append("mfa")
    return tuple(dict.fromkeys(amr))


def evaluate_claims(
    *,
    tier: Tier,
    enclave_factors: Sequence[str],
    amr: Sequence[str],
    acr: str,
    approved: bool,
) -> LoginDecision:
    """Decide whether an ID token's claims satisfy ``tier`` (the relying party's check:
    every hub and the audit UI).

    The caller MUST have verified the token's signature, issuer, audience and
    expiry first, MUST pass ``approved`` from the ``enclave_approved`` claim (False
    when the claim is missing or not a boolean), and MUST run this before any admin
    or allow-all shortcut. Every rule of the tier that claims can carry is checked:

    1. Parse ``enclave_factors`` into categories; an unknown value refuses.
    2. Parse ``acr``; an unknown value refuses. The level counted is the lower of
       ``acr`` and what ``amr`` shows (AAL3 needs ``hwk`` with ``user``; AAL2 ``mfa``):
       a token whose ``acr`` overstates its ``amr`` refuses.
    3. A WebAuthn key (``hwk``/``swk``) counts where the tier requires user
       verification only with ``user`` in ``amr``.
    4. Approval: where the tier needs officer-approved credentials, ``approved``.
    5. Phishing resistance needs a counted key; device-bound needs ``hwk``; biometric
       needs ``biometric`` in ``enclave_factors``, ``user`` and an RFC 8176 biometric
       value in ``amr``.
    6. Compare factors, categories and assurance level with the tier.
    """
    reasons: list[str] = []
    login = tier.login
    methods = set(amr)
    # 1.
    categories: set[FactorCategory] = set()
    for value in enclave_factors:
        try:
            categories.add(FactorCategory(value))
        except ValueError:
            reasons.append(f"the token names an unknown factor category {value!r}")
    # 2.
    claimed = next((n for n in (1, 2, 3) if acr == acr_for_aal(n)), 0)
    if claimed == 0:
        reasons.append(f"the token's assurance level {acr!r} is unknown")
    shown = 3 if {"hwk", "user", "mfa"} <= methods else 2 if "mfa" in methods else 1
    if claimed > shown:
        reasons.append(
            f"the token claims AAL{claimed} but its amr shows at most AAL{shown}, "
            "so it is not believed"
        )
    aal = min(claimed, shown)
    # 3.
    keys = {"hwk", "swk"} & methods
    if keys and login.webauthn_user_verification and "user" not in methods:
        reasons.append(
            "the security key did not verify the user (no user verification, amr 'user'), "
            "so this tier does not count it"
        )
        keys = set()
    # 4.
    if login.enrolment_approval and not approved:
        reasons.append(
            "this tier counts only credentials an officer approved; the token's were not"
        )
    factors = len({"pwd", "otp"} & methods) + (1 if keys else 0)
    # A "knowledge or biometric, unknown which" category (WebAuthn UV) is never
    # named in enclave_factors; the token's "mfa" says the portal counted it.
    category_count = len(categories)
    if "mfa" in methods and "user" in methods and category_count == 1:
        category_count = 2
    # 5. and 6.
    if factors < login.min_factors:
        reasons.append(
            f"this tier needs {login.min_factors} separately verified factors; "
            f"the token shows {factors}"
        )
    if category_count < login.min_categories:
        reasons.append(
            f"this tier needs {login.min_categories} distinct factor categories; "
            f"the token proves {category_count}"
        )
    if login.require_phishing_resistant and not keys:
        reasons.append("this tier needs a phishing-resistant factor (a WebAuthn security key)")
    if login.require_device_bound and "hwk" not in keys:
        reasons.append("this tier needs a device-bound key")
    if login.require_biometric and not (
        FactorCategory.BIOMETRIC in categories and "user" in methods and BIOMETRIC_AMR & methods
    ):
        reasons.append("this tier needs an attested biometric factor")
    if aal < login.aal:
        reasons.append(f"this tier needs assurance level AAL{login.aal}; the token has AAL{aal}")
    return LoginDecision(
        allowed=not reasons,
        categories=frozenset(categories),
        category_count=category_count,
        aal=aal,
        amr=tuple(amr),
        acr=acr,
        reasons=tuple(reasons),
        approved=approved,
    )


@dataclass(frozen=True)
class NetworkDecision:
    allowed: bool
    reason: str


def parse_proxies(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    """The trusted proxies' networks; raises ``ValueError`` naming a malformed one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"{cidr!r} is not a network (e.g. 10.0.0.0/8)") from None
    return tuple(out)


def client_address(
    *, peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Sequence[IPNetwork]
) -> str | None:
    """The client's address as the audit log records it, or None when unknown.

    ``forwarded_for`` is every ``X-Forwarded-For`` header line of the request, in the
    order received (Starlette: ``request.headers.getlist("x-forwarded-for")``). It is
    believed only as far as trusted proxies wrote it:

    1. Join the lines, in order, into one list of hops: several lines of a list
       header mean one line with their values joined by commas (RFC 9110 section 5.3;
       RFC 7239 section 4 for ``Forwarded``), and a proxy may append a line of its own
       instead of extending the last one.
    2. Append the TCP peer: the nearest hop, the only one nobody can forge.
    3. Walk from the right: the first hop that is not a trusted proxy is the client.
       Only trusted proxies' entries are believed: whatever lies left of the client
       was written by the client itself (a forged entry) or by proxies beyond it.
    4. A hop on that walk that is not an IP address (a Unix socket peer, garbage in the
       header) makes the address unknown; the canonical text form is returned.
    5. If every hop is a trusted proxy, the farthest one is the client.
    """
    if isinstance(forwarded_for, str):  # one line passed as a list of characters
        raise TypeError("forwarded_for is the list of header lines, not one line")
    if peer is None:
        return None
    chain = [p.strip() for line in forwarded_for for p in line.split(",") if p.strip()]  # 1
    chain.append(peer)  # 2
    for hop in reversed(chain):  # 3
        try:
            addr = ipaddress.ip_address(hop)
        except ValueError:  # 4
            return None
        if not any(addr in n for n in trusted_proxies):
            return str(addr)
    return str(ipaddress.ip_address(chain[0]))  # 5


def check_source_network(
    *, tier: Tier, allowlist: Sequence[str], client_ip: str | None
) -> NetworkDecision:
    """May a client at ``client_ip`` enter an enclave with this ``allowlist``?

    The caller MUST pass the client address as established through its trusted
    proxies only (``None`` when it is unknown). An empty allow-list denies where the
    tier requires one (fail closed) and allows anyone where it is optional. Against
    a non-empty list, an unknown or malformed address, or a malformed network, denies.
    """
    if not allowlist:
        if tier.network.source_allowlist_required:
            return NetworkDecision(
                False, "this tier admits only listed client networks, and none is listed"
            )
        return NetworkDecision(True, "this tier does not restrict client networks")
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return NetworkDecision(False, f"the client address {client_ip!r} is not an IP address")
    for cidr in allowlist:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return NetworkDecision(False, f"the allow-list entry {cidr!r} is not a network")
        if address.version == network.version and address in network:
            return NetworkDecision(True, f"{client_ip} is in the listed network {network}")
    return NetworkDecision(False, f"{client_ip} is not in any listed client network")
