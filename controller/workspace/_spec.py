"""The part of an ``Enclave`` spec (DESIGN.md, group ``enclave.dev``) a hub needs.

A strict, minimal model: the controller's full spec parser (issue: the local
backend) will build these from the YAML; constructors refuse what a hub cannot use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policies import TIER_IDS

from .errors import SpecError

__all__ = ["EnclaveSpec", "Member"]

_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: The roles an Enclave may give a member: the CRD's (``controller/kube/_schema.py``).
_ROLES = ("researcher", "pi", "officer", "admin")


@dataclass(frozen=True, kw_only=True)
class Member:
    """One portal identity allowed into the enclave."""

    user: str
    role: str = "researcher"

    def __post_init__(self) -> None:
        if not self.user or len(self.user) > 256 or any(c.isspace() for c in self.user):
            raise SpecError(
                "a member's user must be a portal username of 1-256 characters without spaces",
                field="spec.members[].user",
            )
        if self.role not in _ROLES:
            raise SpecError(
                f"a member's role must be one of {', '.join(_ROLES)}, not {self.role!r}",
                field="spec.members[].role",
            )


@dataclass(frozen=True, kw_only=True)
class EnclaveSpec:
    """``metadata.name``, ``spec.tier`` and ``spec.members`` of one Enclave."""

    name: str
    tier: str
    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        if not _DNS1123.fullmatch(self.name):
            raise SpecError(
                f"the enclave name {self.name[:80]!r} is not a DNS-1123 label (a-z, 0-9, -)",
                field="metadata.name",
            )
        if self.tier not in TIER_IDS:
            raise SpecError(
                f"the tier {self.tier[:80]!r} is not one of {', '.join(TIER_IDS)}",
                field="spec.tier",
            )
        if not self.members:
            raise SpecError("an enclave needs at least one member", field="spec.members")
        users = [m.user for m in self.members]
        if len(set(users)) != len(users):
            raise SpecError("a member is listed twice", field="spec.members")
