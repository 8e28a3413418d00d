"""Strict typed models of the tier catalog.

Every control group is a frozen model whose constructor rejects anything
malformed (wrong type, unknown key, missing citation, a citation of a clause its
source does not have). Every tunable field says which direction is *stricter*, so
that an operator overlay can be checked mechanically: tightening is accepted,
loosening is refused unless it is declared as an unsafe exception. A setting
another one depends on (:data:`DEPENDENCIES`) cannot be switched off at all while
the dependent one is on. :data:`ORGANISATIONAL_DUTIES` lists, with their clauses,
what no tier can enforce.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._sources import SOURCES, parse_citation

__all__ = [
    "CONTROL_GROUPS",
    "DEPENDENCIES",
    "ORGANISATIONAL_DUTIES",
    "SOURCES",
    "Control",
    "Dependency",
    "OrganisationalDuty",
    "PodSecurityLevel",
    "ScreenOutputAction",
    "Stricter",
    "Tier",
    "strictness_of",
]


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


class ScreenOutputAction(enum.StrEnum):
    """What the workspace does past the screen-output budget, least to most restrictive."""

    #: Further output is not sent to the browser; the researcher is told once.
    REFUSE_OUTPUT = "refuse_output"
    #: The researcher is told, then the single-user server stops.
    STOP_SESSION = "stop_session"


def _s(direction: Stricter) -> Any:
    return direction


#: A yes/no setting where ``true`` is the stricter value (a requirement).
TrueIsStricter = Annotated[bool, Stricter.TRUE]
#: A yes/no setting where ``false`` is the stricter value (a permission).
FalseIsStricter = Annotated[bool, Stricter.FALSE]


class Control(BaseModel):
    """One group of settings with the guideline clauses that demand them."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Human title of the group, for tables and docs.
    title: ClassVar[str] = ""

    sources: tuple[str, ...] = Field(
        min_length=1,
        description="Guideline clauses behind this control (policies/_sources.py checks them).",
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
    def _known_clauses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for citation in value:
            parse_citation(citation)  # refuses an unknown source or a clause it lacks
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
        TrueIsStricter, Field(description="Each project gets its own namespace, hub and storage.")
    ]
    cross_project_paths: Annotated[
        FalseIsStricter, Field(description="Any network or storage path between two projects.")
    ]


class Datasets(Control):
    title: ClassVar[str] = "Datasets"
    read_only: Annotated[TrueIsStricter, Field(description="Datasets are mounted read-only.")]


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
        TrueIsStricter, Field(description="One factor must be phishing-resistant (WebAuthn).")
    ]
    require_biometric: Annotated[
        TrueIsStricter,
        Field(
            description="One factor must be an attested biometric "
            "(WebAuthn UV on an allow-listed authenticator model)."
        ),
    ]
    require_device_bound: Annotated[
        TrueIsStricter,
        Field(description="WebAuthn keys must be device-bound (synced passkeys refused)."),
    ]
    webauthn_user_verification: Annotated[
        TrueIsStricter,
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
        TrueIsStricter,
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
        TrueIsStricter,
        Field(
            description="Entry only from listed client networks (access terminals, "
            "remote security areas); an empty list denies."
        ),
    ]
    encrypted_transport: Annotated[
        TrueIsStricter, Field(description="Paths from outside are TLS-encrypted.")
    ]


class Egress(Control):
    title: ClassVar[str] = "Workspace egress"
    internet: Annotated[FalseIsStricter, Field(description="Outbound internet from the workspace.")]
    hub_api: Annotated[
        FalseIsStricter,
        Field(description="The workspace may reach its own hub's API (needed to run)."),
    ]
    audit_intake: Annotated[
        TrueIsStricter,
        Field(
            description="The workspace reaches the audit intake, through which its file "
            "events are recorded (switching it off would silence them)."
        ),
    ]
    dns: Annotated[
        FalseIsStricter,
        Field(description="The workspace may query cluster DNS (DNS can tunnel data)."),
    ]
    cloud_metadata: Annotated[
        FalseIsStricter, Field(description="The workspace may reach the cloud metadata endpoint.")
    ]


class BrowserDownload(Control):
    title: ClassVar[str] = "Download to the browser"
    allowed: Annotated[
        FalseIsStricter,
        Field(description="Files may be downloaded to the browser (/files, nbconvert, ?download)."),
    ]
    cache_no_store: Annotated[
        TrueIsStricter,
        Field(
            description="Workspace and portal pages are sent with Cache-Control: no-store, "
            "so the browser keeps no copy."
        ),
    ]


#: A byte count where fewer bytes is stricter (at most 1 TiB; at least 1, checked with a
#: clear sentence by the control).
_ByteCount = Annotated[int, Stricter.LOWER, Field(le=1 << 40)]


class ScreenOutput(Control):
    title: ClassVar[str] = "Screen output (bytes sent to the browser)"
    budget_bytes: Annotated[
        _ByteCount,
        Field(
            description="Bytes a workspace session may send to the browser (kernel and "
            "terminal output, contents API responses) before the budget applies."
        ),
    ]
    warn_bytes: Annotated[
        _ByteCount,
        Field(
            description="Bytes sent to the browser at which the researcher is warned and "
            "the officer sees an event."
        ),
    ]
    past_budget: Annotated[
        ScreenOutputAction,
        _s(Stricter.ORDERED),
        Field(
            strict=False,
            description="What happens to output past the budget: refuse_output (not sent, "
            "the researcher is told) or stop_session (the server stops as well).",
        ),
    ]

    @field_validator("budget_bytes", "warn_bytes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError(
                f"must be at least 1 byte (got {value}): a budget or warning of nothing "
                "would refuse a session its first output"
            )
        return value

    @model_validator(mode="after")
    def _warn_before_budget(self) -> ScreenOutput:
        if self.warn_bytes >= self.budget_bytes:
            raise ValueError(
                f"warn_bytes ({self.warn_bytes}) must be below budget_bytes "
                f"({self.budget_bytes}): the warning comes before the budget applies"
            )
        return self


class Clipboard(Control):
    title: ClassVar[str] = "Clipboard copy-out"
    copy_out_disabled: Annotated[
        TrueIsStricter,
        Field(
            description="JupyterLab's clipboard copy-out is switched off (best effort: a "
            "browser can still copy what it shows)."
        ),
    ]


class ExportResults(Control):
    title: ClassVar[str] = "Export of results (airlock egress)"
    allowed: Annotated[
        FalseIsStricter,
        Field(description="Results (no individual-level data) may leave through the airlock."),
    ]
    reviewers: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(ge=1, le=5, description="Distinct reviewers who must approve each results export."),
    ]
    individual_level_data: Annotated[
        FalseIsStricter, Field(description="A results export may contain individual-level data.")
    ]


class ExportData(Control):
    title: ClassVar[str] = "Export of data (airlock egress)"
    allowed: Annotated[
        FalseIsStricter,
        Field(
            description="Data (individual-level records or dataset files) may leave through "
            "the airlock."
        ),
    ]
    security_committee_approval: Annotated[
        TrueIsStricter,
        Field(description="A data export needs the security committee's approval, recorded."),
    ]
    declared_destination: Annotated[
        TrueIsStricter,
        Field(
            description="A data export names its destination (an approved analysis server), "
            "recorded."
        ),
    ]
    retained_copy: Annotated[
        TrueIsStricter, Field(description="A copy of every data export is kept for audit.")
    ]


class Import(Control):
    title: ClassVar[str] = "Import (airlock ingress)"
    malware_scan: Annotated[
        TrueIsStricter, Field(description="Files brought in are malware-scanned.")
    ]
    reviewer_required: Annotated[
        TrueIsStricter, Field(description="A reviewer approves each import.")
    ]


class Terminals(Control):
    title: ClassVar[str] = "Jupyter terminals"
    enabled: Annotated[FalseIsStricter, Field(description="Jupyter terminals are available.")]


class AuditedOperations(Control):
    title: ClassVar[str] = "Audited operations"
    logins: Annotated[TrueIsStricter, Field(description="Every login factor, passed and failed.")]
    sessions: Annotated[TrueIsStricter, Field(description="Session start and end.")]
    spawns: Annotated[TrueIsStricter, Field(description="Workspace start and stop.")]
    file_events: Annotated[TrueIsStricter, Field(description="File opens, saves and deletions.")]
    exports: Annotated[TrueIsStricter, Field(description="Export and import requests.")]
    admin_actions: Annotated[TrueIsStricter, Field(description="Every administrative action.")]
    code_execution: Annotated[
        TrueIsStricter, Field(description="Every code execution request sent to a kernel.")
    ]

    @model_validator(mode="after")
    def _entry_records(self) -> AuditedOperations:
        if not (self.logins and self.sessions):
            raise ValueError("logins and sessions are always audited (entry records)")
        return self


class AccessLogReview(Control):
    title: ClassVar[str] = "Access-log review"
    reviews_recorded: Annotated[
        TrueIsStricter,
        Field(description="Each officer's review of the access log is recorded in the log."),
    ]
    overdue_reminder: Annotated[
        TrueIsStricter,
        Field(description="Officers are reminded when no review happened within the period."),
    ]
    review_period_days: Annotated[
        int,
        _s(Stricter.LOWER),
        Field(
            ge=1,
            le=366,
            description="Days between reviews of the access log at most (the operator's "
            "period; the product default is monthly).",
        ),
    ]


class Register(Control):
    title: ClassVar[str] = "Register of users and data"
    users: Annotated[
        TrueIsStricter,
        Field(description="A register of the users of each project and their roles."),
    ]
    data_locations: Annotated[
        TrueIsStricter,
        Field(description="A register of each dataset and where it is stored and mounted."),
    ]
    change_history: Annotated[
        TrueIsStricter,
        Field(description="Every change to the register is kept and can be reviewed."),
    ]


class Compute(Control):
    title: ClassVar[str] = "Compute placement"
    dedicated_nodes: Annotated[
        TrueIsStricter,
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
        TrueIsStricter, Field(description="Containers have a read-only root filesystem.")
    ]
    service_account_token: Annotated[
        FalseIsStricter, Field(description="Workspace pods get a Kubernetes service-account token.")
    ]


class Images(Control):
    title: ClassVar[str] = "Workspace images"
    no_unneeded_software: Annotated[
        TrueIsStricter,
        Field(description="Images carry no P2P or other software the analysis does not need."),
    ]
    patched_base_images: Annotated[
        TrueIsStricter,
        Field(description="Images are built on patched base images and rebuilt for fixes."),
    ]


class EncryptionAtRest(Control):
    title: ClassVar[str] = "Encryption at rest"
    stores: Annotated[
        TrueIsStricter,
        Field(description="The identity, audit and airlock stores are encrypted at rest."),
    ]
    volumes: Annotated[
        TrueIsStricter, Field(description="Workspace and dataset volumes are encrypted at rest.")
    ]


class EndOfUse(Control):
    title: ClassVar[str] = "End of use"
    destroy_volumes: Annotated[
        TrueIsStricter,
        Field(description="Workspace volumes are destroyed unrecoverably at expiry or deletion."),
    ]
    destroy_snapshots_and_backups: Annotated[
        TrueIsStricter,
        Field(description="Volume snapshots and the backups the product made are destroyed too."),
    ]
    destroy_airlock_staging: Annotated[
        TrueIsStricter,
        Field(
            description="Airlock staging, and retained exports past their retention, are "
            "destroyed too."
        ),
    ]
    completion_report: Annotated[
        TrueIsStricter, Field(description="A completion report is signed into the audit log.")
    ]


class StopOrder(Control):
    title: ClassVar[str] = "Stop order or consent withdrawal"
    stop_and_delete: Annotated[
        TrueIsStricter,
        Field(
            description="On a stop order or a consent withdrawal, access stops and the "
            "affected data is deleted, recorded in the audit log."
        ),
    ]


class AuditRetention(Control):
    title: ClassVar[str] = "Audit retention"
    min_years: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(
            ge=5,
            le=100,
            description="Years the audit log is kept at least, counted from the completion report.",
        ),
    ]
    min_years_after_final_publication: Annotated[
        int,
        _s(Stricter.HIGHER),
        Field(
            ge=3,
            le=100,
            description="Years kept at least after the final publication, if that ends later.",
        ),
    ]
    pruned_on_deletion: Annotated[
        FalseIsStricter, Field(description="Deleting a project prunes its audit entries.")
    ]


class Incident(Control):
    title: ClassVar[str] = "Incident response"
    one_command_quarantine: Annotated[
        TrueIsStricter,
        Field(
            description="One command revokes sessions, stops the hub, denies all traffic "
            "and records it."
        ),
    ]
    provider_report: Annotated[
        TrueIsStricter,
        Field(
            description="After quarantine, the incident report for the data provider is "
            "prepared from the audit log."
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
    "screen_output": ScreenOutput,
    "clipboard": Clipboard,
    "export_results": ExportResults,
    "export_data": ExportData,
    "import": Import,
    "terminals": Terminals,
    "audited_operations": AuditedOperations,
    "access_log_review": AccessLogReview,
    "register": Register,
    "compute": Compute,
    "pod_security": PodSecurity,
    "images": Images,
    "encryption_at_rest": EncryptionAtRest,
    "end_of_use": EndOfUse,
    "stop_order": StopOrder,
    "audit_retention": AuditRetention,
    "incident": Incident,
}

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
