"""The control groups of a tier: one frozen model per group, each setting with its direction.

To add a setting every tier has, add a field here (with its direction and a
description) and a value in each ``policies/catalog/*.yaml``; a new group also
needs its entry in :data:`CONTROL_GROUPS` and a field on ``_model.Tier``.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from ._control import Control, FalseIsStricter, Stricter, TrueIsStricter

__all__ = ["CONTROL_GROUPS", "PodSecurityLevel", "ScreenOutputAction"]


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
