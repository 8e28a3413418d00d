"""Strict typed models of the tier catalog.

Every control group is a frozen model whose constructor rejects anything
malformed (wrong type, unknown key, missing citation). Every tunable field says
which direction is *stricter*, so that an operator overlay can be checked
mechanically: tightening is accepted, loosening is refused unless it is declared
as an unsafe exception.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CONTROL_GROUPS",
    "SOURCES",
    "Control",
    "ExportContent",
    "PodSecurityLevel",
    "Stricter",
    "Tier",
    "strictness_of",
]

#: The short names of the sources in TIERS.md; every citation starts with one.
SOURCES: dict[str, str] = {
    "NBDC-U7": "NBDC Human Data Security Guidelines for data users, Ver. 7.0 (2024-04-01)",
    "NBDC-S8": "NBDC Human Data Sharing Guidelines, Ver. 8.0",
    "NBDC-DC4": "NBDC guideline for database-centre and off-premise server operators, Ver. 4.0",
    "TMM-SP": "ToMMo Data Information Security Policy (rev. Oct 2024) and supercomputer rules",
    "SATRE": "Standard Architecture for Trusted Research Environments",
    "NIST-63B4": "NIST SP 800-63B-4, Digital Identity Guidelines: Authentication",
    "RFC8176": "RFC 8176, Authentication Method Reference Values",
    "ETHICS-JP": "Ethical Guidelines for Medical and Biological Research Involving Human Subjects",
}

_CITATION = re.compile(r"^(?P<source>[A-Z][A-Z0-9-]*[A-Z0-9])(?: (?P<clause>\S.{0,118}))?$")


class Stricter(enum.Enum):
    """Which way a value moves when a control gets stricter."""

    TRUE = "true is stricter"
    FALSE = "false is stricter"
    HIGHER = "a higher value is stricter"
    LOWER = "a lower value is stricter"
    ORDERED = "later in the enum's order is stricter"


class PodSecurityLevel(enum.StrEnum):
    """Pod Security Standards levels, least to most restrictive."""

    PRIVILEGED = "privileged"
    BASELINE = "baseline"
    RESTRICTED = "restricted"


class ExportContent(enum.StrEnum):
    """What may leave through the airlock, most to least permissive."""

    DATA_OR_RESULTS = "data-or-results"
    RESULTS = "results"
    NOTHING = "nothing"


def _s(direction: Stricter) -> Any:
    return direction


class Control(BaseModel):
    """One group of settings with the guideline clauses that demand them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Human title of the group, for tables and docs.
    title: ClassVar[str] = ""

    sources: tuple[str, ...] = Field(
        min_length=1,
        description="Guideline clauses behind this control (short names from TIERS.md).",
    )
    note: str = Field(
        default="",
        max_length=600,
        description="Plain-language statement of what the control means in practice.",
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _sources_from_list(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for citation in value:
            match = _CITATION.match(citation)
            if match is None or match["source"] not in SOURCES:
                known = ", ".join(SOURCES)
                raise ValueError(f"citation {citation!r} must start with one of {known}")
        return value

    def settings(self) -> Iterator[tuple[str, Any, Stricter, str]]:
        """Yield (field, value, direction, description) for each tunable setting."""
        for name, info in type(self).model_fields.items():
            direction = strictness_of(type(self), name)
            if direction is None:
                continue
            yield name, getattr(self, name), direction, info.description or name


def strictness_of(model: type[BaseModel], field: str) -> Stricter | None:
    info = model.model_fields.get(field)
    if info is None:
        return None
    for meta in info.metadata:
        if isinstance(meta, Stricter):
            return meta
    return None


# --- the control groups ------------------------------------------------------------


class Isolation(Control):
    title: ClassVar[str] = "Project isolation"
    dedicated_namespace: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Each project gets its own namespace, hub and storage."),
    ]
    cross_project_paths: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="Any network or storage path between two projects."),
    ]


class Datasets(Control):
    title: ClassVar[str] = "Datasets"
    read_only: Annotated[
        bool, _s(Stricter.TRUE), Field(description="Datasets are mounted read-only.")
    ]


class Login(Control):
    title: ClassVar[str] = "Login factors"
    min_factors: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=1, le=3, description="Independent factors verified at login."),
    ]
    min_categories: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(
            ge=1,
            le=3,
            description="Distinct factor categories (biometric, possession, knowledge) proven.",
        ),
    ]
    require_phishing_resistant: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="One factor must be phishing-resistant (WebAuthn)."),
    ]
    require_biometric: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(
            description="One factor must be an attested biometric "
            "(WebAuthn UV on an allow-listed authenticator model)."
        ),
    ]
    require_device_bound: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="WebAuthn keys must be device-bound (synced passkeys refused)."),
    ]
    webauthn_user_verification: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="A WebAuthn assertion without user verification (UV) is refused."),
    ]
    password_min_length: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=8, le=256, description="Minimum password length in characters."),
    ]
    aal: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=1, le=3, description="NIST SP 800-63B-4 authenticator assurance level."),
    ]
    enrolment_approval: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(
            description="A newly enrolled factor counts for this tier only after a security "
            "officer approved it."
        ),
    ]

    @model_validator(mode="after")
    def _consistent(self) -> Login:
        if self.min_categories > self.min_factors:
            raise ValueError("min_categories cannot exceed min_factors")
        if self.aal >= 3 and not (self.require_phishing_resistant and self.require_device_bound):
            raise ValueError("aal 3 needs require_phishing_resistant and require_device_bound")
        return self


class Session(Control):
    title: ClassVar[str] = "Sessions"
    idle_timeout_s: Annotated[
        int,
        _s(Stricter.LOWER),
        Field(ge=60, le=86_400, description="Idle time after which a session locks (seconds)."),
    ]
    max_session_s: Annotated[
        int,
        _s(Stricter.LOWER),
        Field(
            ge=300, le=7 * 86_400, description="Absolute session lifetime, then re-login (seconds)."
        ),
    ]


class Throttle(Control):
    title: ClassVar[str] = "Failed-attempt throttle"
    max_consecutive_failures: Annotated[
        int,
        _s(Stricter.LOWER),
        Field(
            ge=1,
            le=100,
            description="Consecutive failures after which an authenticator is disabled.",
        ),
    ]
    backoff_after_failures: Annotated[
        int,
        _s(Stricter.LOWER),
        Field(ge=1, le=100, description="Failures after which growing delays start."),
    ]
    backoff_initial_s: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=1, le=3600, description="First delay once backoff starts (seconds)."),
    ]


class Network(Control):
    title: ClassVar[str] = "Client source networks"
    source_allowlist_required: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(
            description="Entry only from listed client networks (access terminals, "
            "remote security areas); an empty list denies."
        ),
    ]
    encrypted_transport: Annotated[
        bool, _s(Stricter.TRUE), Field(description="Paths from outside are TLS-encrypted.")
    ]


class Egress(Control):
    title: ClassVar[str] = "Workspace egress"
    internet: Annotated[
        bool, _s(Stricter.FALSE), Field(description="Outbound internet from the workspace.")
    ]
    hub_api: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="The workspace may reach its own hub's API (needed to run)."),
    ]
    audit_intake: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="The workspace may reach the audit intake (to record file events)."),
    ]
    dns: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="The workspace may query cluster DNS (DNS can tunnel data)."),
    ]
    cloud_metadata: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="The workspace may reach the cloud metadata endpoint."),
    ]


class BrowserDownload(Control):
    title: ClassVar[str] = "Download to the browser"
    allowed: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="Files may be downloaded to the browser (/files, nbconvert, ?download)."),
    ]


class Export(Control):
    title: ClassVar[str] = "Export (airlock egress)"
    content: Annotated[
        ExportContent,
        _s(Stricter.ORDERED),
        Field(strict=False, description="What may leave: data-or-results, results, or nothing."),
    ]
    reviewers: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=0, le=5, description="Distinct reviewers who must approve each export."),
    ]
    security_committee: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Approval must come from the security committee."),
    ]
    retained_copy: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="A copy of every export is kept for audit."),
    ]
    dataset_files: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="Files that are (copies of) provided dataset files may be exported."),
    ]

    @model_validator(mode="after")
    def _reviewed(self) -> Export:
        if self.content is not ExportContent.NOTHING and self.reviewers < 1:
            raise ValueError("an export that is allowed needs at least one reviewer")
        return self


class Import(Control):
    title: ClassVar[str] = "Import (airlock ingress)"
    malware_scan: Annotated[
        bool, _s(Stricter.TRUE), Field(description="Files brought in are malware-scanned.")
    ]
    reviewer_required: Annotated[
        bool, _s(Stricter.TRUE), Field(description="A reviewer approves each import.")
    ]


class Terminals(Control):
    title: ClassVar[str] = "Jupyter terminals"
    enabled: Annotated[
        bool, _s(Stricter.FALSE), Field(description="Jupyter terminals are available.")
    ]


class AuditedOperations(Control):
    title: ClassVar[str] = "Audited operations"
    logins: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Every login factor, passed and failed."),
    ]
    sessions: Annotated[bool, _s(Stricter.TRUE), Field(description="Session start and end.")]
    spawns: Annotated[bool, _s(Stricter.TRUE), Field(description="Workspace start and stop.")]
    file_events: Annotated[
        bool, _s(Stricter.TRUE), Field(description="File opens, saves and deletions.")
    ]
    exports: Annotated[bool, _s(Stricter.TRUE), Field(description="Export and import requests.")]
    admin_actions: Annotated[
        bool, _s(Stricter.TRUE), Field(description="Every administrative action.")
    ]
    code_execution: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Every code execution request sent to a kernel."),
    ]

    @model_validator(mode="after")
    def _entry_records(self) -> AuditedOperations:
        if not (self.logins and self.sessions):
            raise ValueError("logins and sessions are always audited (entry records)")
        return self


class Compute(Control):
    title: ClassVar[str] = "Compute placement"
    dedicated_nodes: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Workspaces run on a dedicated node pool (taint + selector)."),
    ]


class PodSecurity(Control):
    title: ClassVar[str] = "Pod security"
    level: Annotated[
        PodSecurityLevel,
        _s(Stricter.ORDERED),
        Field(strict=False, description="Pod Security Admission level enforced on the namespace."),
    ]
    read_only_root_fs: Annotated[
        bool, _s(Stricter.TRUE), Field(description="Containers have a read-only root filesystem.")
    ]
    service_account_token: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="Workspace pods get a Kubernetes service-account token."),
    ]


class EndOfUse(Control):
    title: ClassVar[str] = "End of use"
    destroy_volumes: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="Workspace volumes are destroyed unrecoverably at expiry or deletion."),
    ]
    completion_report: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(description="A completion report is signed into the audit log."),
    ]


class AuditRetention(Control):
    title: ClassVar[str] = "Audit retention"
    min_years: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=5, le=100, description="Years the audit log is kept at least."),
    ]
    pruned_on_deletion: Annotated[
        bool,
        _s(Stricter.FALSE),
        Field(description="Deleting a project prunes its audit entries."),
    ]


class Incident(Control):
    title: ClassVar[str] = "Incident response"
    one_command_quarantine: Annotated[
        bool,
        _s(Stricter.TRUE),
        Field(
            description="One command revokes sessions, stops the hub, denies all traffic "
            "and records it."
        ),
    ]


#: The control groups of a tier, in the order tables show them.
CONTROL_GROUPS: dict[str, type[Control]] = {
    "isolation": Isolation,
    "datasets": Datasets,
    "login": Login,
    "session": Session,
    "throttle": Throttle,
    "network": Network,
    "egress": Egress,
    "browser_download": BrowserDownload,
    "export": Export,
    "import": Import,
    "terminals": Terminals,
    "audited_operations": AuditedOperations,
    "compute": Compute,
    "pod_security": PodSecurity,
    "end_of_use": EndOfUse,
    "audit_retention": AuditRetention,
    "incident": Incident,
}

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
    export: Export
    import_: Import = Field(alias="import")
    terminals: Terminals
    audited_operations: AuditedOperations
    compute: Compute
    pod_security: PodSecurity
    end_of_use: EndOfUse
    audit_retention: AuditRetention
    incident: Incident

    unsafe_exceptions: tuple[UnsafeException, ...] = ()

    def control(self, group: str) -> Control:
        """The control group named as in the catalog files (``import``, not ``import_``)."""
        if group not in CONTROL_GROUPS:
            raise KeyError(group)
        value = getattr(self, "import_" if group == "import" else group)
        assert isinstance(value, Control)
        return value

    def controls(self) -> Iterator[tuple[str, Control]]:
        for group in CONTROL_GROUPS:
            yield group, self.control(group)
