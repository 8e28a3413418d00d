"""The tier: every control group of one security tier, and the rules across them.

A setting another one depends on (:data:`DEPENDENCIES`) cannot be switched off at
all while the dependent one is on. :data:`ORGANISATIONAL_DUTIES` lists, with their
clauses, what no tier can enforce. What a control is and which way is stricter is
in ``_control.py``; the control groups are in ``_groups.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._control import Control
from ._groups import (
    CONTROL_GROUPS,
    AccessLogReview,
    AuditedOperations,
    AuditRetention,
    BrowserDownload,
    Clipboard,
    Compute,
    Datasets,
    Egress,
    EncryptionAtRest,
    EndOfUse,
    ExportData,
    ExportResults,
    Images,
    Import,
    Incident,
    Isolation,
    Login,
    Network,
    PodSecurity,
    Register,
    ScreenOutput,
    Session,
    StopOrder,
    Terminals,
    Throttle,
)
from ._sources import parse_citation

__all__ = [
    "DEPENDENCIES",
    "ORGANISATIONAL_DUTIES",
    "Dependency",
    "OrganisationalDuty",
    "Tier",
    "UnsafeException",
    "broken_dependency",
]


#: Groups whose attribute name differs (Python keyword, or a name pydantic reserves).
_ATTRIBUTE = {"import": "import_", "register": "register_"}

TierId = Literal["nbdc-standard", "nbdc-high", "tommo-standard", "tommo-strong"]


@dataclass(frozen=True)
class UnsafeException:
    """A loosening the operator declared on purpose; shown wherever the tier is."""

    control: str
    value: Any
    baseline: Any
    reason: str


class Tier(BaseModel):
    """One security tier: identity, the provider's wording, and every control."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    id: TierId
    name: str = Field(min_length=1, max_length=80)
    provider: Literal["NBDC", "ToMMo"]
    provider_level: str = Field(min_length=1, max_length=80)
    summary: str = Field(min_length=1, max_length=800)

    isolation: Isolation
    datasets: Datasets
    login: Login
    session: Session
    throttle: Throttle
    network: Network
    egress: Egress
    browser_download: BrowserDownload
    screen_output: ScreenOutput
    clipboard: Clipboard
    export_results: ExportResults
    export_data: ExportData
    import_: Import = Field(alias="import")
    terminals: Terminals
    audited_operations: AuditedOperations
    access_log_review: AccessLogReview
    register_: Register = Field(alias="register")
    compute: Compute
    pod_security: PodSecurity
    images: Images
    encryption_at_rest: EncryptionAtRest
    end_of_use: EndOfUse
    stop_order: StopOrder
    audit_retention: AuditRetention
    incident: Incident

    unsafe_exceptions: tuple[UnsafeException, ...] = ()

    def control(self, group: str) -> Control:
        """The control group named as in the catalog files (``import``, not ``import_``)."""
        if group not in CONTROL_GROUPS:
            raise KeyError(group)
        value = getattr(self, _ATTRIBUTE.get(group, group))
        assert isinstance(value, Control)
        return value

    def controls(self) -> Iterator[tuple[str, Control]]:
        for group in CONTROL_GROUPS:
            yield group, self.control(group)


# --- dependencies between controls ---------------------------------------------------


@dataclass(frozen=True)
class Dependency:
    """While ``setting`` is on, ``needs`` must stay on: no overlay may switch it off."""

    setting: str
    needs: str
    why: str

    def _value(self, tier: Tier, ref: str) -> bool:
        group, name = ref.split(".")
        return bool(getattr(tier.control(group), name))

    def applies(self, tier: Tier) -> bool:
        return self._value(tier, self.setting)

    def holds(self, tier: Tier) -> bool:
        return not self.applies(tier) or self._value(tier, self.needs)


#: Every dependency between two settings; :func:`broken_dependency` checks them all.
DEPENDENCIES: tuple[Dependency, ...] = (
    Dependency(
        "audited_operations.file_events",
        "egress.audit_intake",
        "the workspace records file events through the audit intake",
    ),
    Dependency(
        "audited_operations.code_execution",
        "egress.audit_intake",
        "the workspace records code execution requests through the audit intake",
    ),
    Dependency(
        "login.require_biometric",
        "login.webauthn_user_verification",
        "a biometric is only proven through WebAuthn user verification",
    ),
    Dependency(
        "access_log_review.overdue_reminder",
        "access_log_review.reviews_recorded",
        "a review is overdue only when reviews are recorded",
    ),
    Dependency(
        "incident.provider_report",
        "audited_operations.sessions",
        "the incident report is prepared from the recorded sessions",
    ),
)


def broken_dependency(tier: Tier) -> Dependency | None:
    """The first dependency ``tier`` breaks, or None."""
    return next((d for d in DEPENDENCIES if not d.holds(tier)), None)


# --- what no tier can enforce ---------------------------------------------------------


@dataclass(frozen=True)
class OrganisationalDuty:
    """A duty of the operator or the researcher that software cannot discharge."""

    duty: str
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        for citation in self.sources:
            parse_citation(citation)


#: TIERS.md's "cannot enforce" list, each duty with the clauses that state it.
ORGANISATIONAL_DUTIES: tuple[OrganisationalDuty, ...] = (
    OrganisationalDuty(
        "The operator's physical server room, at every tier: multi-factor entry, entry "
        "records captured automatically, a room or locked rack dedicated to the approved "
        "use. NBDC-U7 3 does not apply to off-premise servers; NBDC-DC4 puts it on the "
        "operator.",
        (
            "NBDC-DC4 §2",
            "NBDC-DC4 2.1 server 1",
            "NBDC-U7 3 (1)",
            "NBDC-U7 3 (2)",
            "NBDC-U7 3 (3)",
        ),
    ),
    OrganisationalDuty(
        "Device disposal: disks and devices that held data are destroyed unrecoverably.",
        ("NBDC-U7 2.2 server 9", "NBDC-DC4 2.1 server 11"),
    ),
    OrganisationalDuty(
        "Training of data users and operators.",
        ("NBDC-U7 2.2 general 2", "NBDC-U7 2.3 item 1", "NBDC-DC4 2.1 general 4"),
    ),
    OrganisationalDuty(
        "The yearly checklist (its own numbering; the guideline clauses govern).",
        ("NBDC-U7 2.2 general 5",),
    ),
    OrganisationalDuty(
        "Accepting audits by the review board or the DBCLS.",
        ("NBDC-U7 2.2 general 4", "NBDC-DC4 2.1 general 6"),
    ),
    OrganisationalDuty(
        "An expert audit of the system when built and every 2-3 years.",
        ("NBDC-DC4 2.1 general 7",),
    ),
    OrganisationalDuty(
        "The researcher's own terminal: patches, no public PCs, no printouts or photographs "
        "of data.",
        ("NBDC-U7 2.3 item 3", "NBDC-U7 2.3 item 4", "NBDC-U7 2.3 item 7"),
    ),
    OrganisationalDuty(
        "ToMMo's viewing-room rules: remote access only from approved remote security "
        "areas, and the rules of those rooms.",
        ("TMM-SP",),
    ),
)
