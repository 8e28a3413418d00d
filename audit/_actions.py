"""The registry of audit action names and the versioned schema of each one's details.

An action name is dotted lower-case (``auth.factor.verified``). Each registered action
has a schema version, an OCSF class where one fits, the fields its ``details`` may
carry, and a sentence saying what the event *cannot* capture, so that an officer
reading the log knows where its evidence ends.

Versioning rule: a new schema version may only add optional detail fields. Removing,
renaming or retyping a field needs a new action name. So every entry valid under an
older version stays valid, and the version recorded in each leaf (``schema``) says
which fields the sender knew about.

Each action also names the ``sources`` allowed to send it (DESIGN.md "Audit": portal,
hub, workspace, controller, audit, cli). The service's intake refuses an action from any
other source (403 ``action_not_allowed``), and the officer UI's charts count an action
only from those sources. Registering an action means writing its entry below, with a
``"sources"`` line naming who really sends it, e.g. ``"sources": _WORKSPACE,``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["ACTIONS", "ACTION_SOURCES", "ActionSpec", "DetailField", "action_spec"]

ACTION_SOURCES: frozenset[str] = frozenset(
    {"portal", "hub", "workspace", "controller", "audit", "cli"}
)
"""Every event source (DESIGN.md "Audit"); ``ActionSpec.sources`` is a subset."""

DetailType = Literal["str", "int", "bool", "str_list"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DetailField:
    """One allowed key of ``details``: its JSON type, whether required, its bounds."""

    type: DetailType
    required: bool = False
    max_len: int = 1024
    choices: tuple[str, ...] = ()
    doc: str = ""
    #: a multi-line text (code a researcher ran): line feeds and tabs are allowed in it;
    #: every other invisible or bidirectional character is still refused at intake
    multiline: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """A registered action: name, schema version, detail fields and known blind spots."""

    name: str
    version: int
    summary: str
    cannot_capture: str
    fields: MappingProxyType[str, DetailField]
    #: the sources that may send this action; intake refuses it from any other
    sources: frozenset[str]
    ocsf_class: int | None = None

    def allows(self, source: str) -> bool:
        """True when ``source`` is entitled to send this action."""
        return source in self.sources


def _f(
    type_: DetailType,
    *,
    required: bool = False,
    max_len: int = 1024,
    choices: tuple[str, ...] = (),
    doc: str = "",
    multiline: bool = False,
) -> DetailField:
    return DetailField(
        type=type_,
        required=required,
        max_len=max_len,
        choices=choices,
        doc=doc,
        multiline=multiline,
    )


_FACTOR_KINDS = ("password", "totp", "webauthn", "recovery_code", "oidc")
_CATEGORY_FIELD = _f(
    "str",
    choices=("knowledge", "possession", "biometric"),
    doc="factor category as in the enclave_factors claim (policies.FactorCategory)",
)

# Who sends what (combine with +, e.g. _PORTAL + _AUDIT). The audit service writes its
# own events (audit.*, and the officer sign-ins it handles) through the log, never
# through intake: no intake token can be issued for source "audit".
_PORTAL = ("portal",)
_HUB = ("hub",)
_WORKSPACE = ("workspace",)
_CONTROLLER = ("controller",)
_AUDIT = ("audit",)
_CLI = ("cli",)

_SPECS: list[dict[str, object]] = [
    # --- authentication (OCSF Authentication 3002) --------------------------------
    {
        "name": "auth.login.started",
        "sources": _PORTAL,
        "summary": "A login attempt began at the portal.",
        "cannot_capture": "Attempts that never reached the portal (blocked by a proxy or WAF) "
        "are not seen.",
        "ocsf": 3002,
        "fields": {"method": _f("str", max_len=64), "user_agent": _f("str", max_len=512)},
    },
    {
        "name": "auth.factor.verified",
        "sources": _PORTAL + _AUDIT,
        "summary": "One authentication factor was verified.",
        "cannot_capture": "Whether the person holding the factor is its registered owner (a "
        "shared or stolen authenticator looks the same).",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", required=True, choices=_FACTOR_KINDS),
            "category": _CATEGORY_FIELD,
            "credential": _f("str", max_len=128),
            "user_verified": _f("bool"),
            "biometric_attested": _f("bool"),
            "backup_eligible": _f("bool"),
            "aal": _f("int"),
            "credential_id": _f("str", max_len=256),
            "user_agent": _f("str", max_len=512),
        },
    },
    {
        "name": "auth.factor.failed",
        "sources": _PORTAL + _AUDIT,
        "summary": "An authentication factor was presented and rejected.",
        "cannot_capture": "The secret that was tried (never logged), or failures the client "
        "rejected before contacting the server.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", required=True, choices=_FACTOR_KINDS),
            "reason": _f("str", required=True, max_len=256),
            "failures_in_window": _f("int"),
            "category": _CATEGORY_FIELD,
            "credential": _f("str", max_len=128),
            "consecutive_failures": _f("int"),
        },
    },
    {
        "name": "auth.lockout",
        "sources": _PORTAL + _AUDIT,
        "summary": "An account was locked after repeated failures.",
        "cannot_capture": "Whether the failures came from the account holder or an attacker.",
        "ocsf": 3002,
        "fields": {
            "until": _f("str", max_len=64),
            "failures": _f("int"),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "auth.factor.enrolled",
        "sources": _PORTAL,
        "summary": "A new authentication factor was registered for a user.",
        "cannot_capture": "The physical custody of the enrolled authenticator.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", required=True, choices=_FACTOR_KINDS),
            "credential_id": _f("str", max_len=256),
            "aaguid": _f("str", max_len=64),
        },
    },
    {
        "name": "auth.factor.revoked",
        "sources": _PORTAL,
        "summary": "An authentication factor was removed.",
        "cannot_capture": "Copies of a software factor (e.g. a TOTP seed) made before revocation.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", required=True, choices=_FACTOR_KINDS),
            "credential_id": _f("str", max_len=256),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "auth.logout",
        "sources": _PORTAL + _AUDIT,
        "summary": "A user ended their portal session.",
        "cannot_capture": "Sessions that simply expired (see session.ended).",
        "ocsf": 3002,
        "fields": {},
    },
    # --- sessions and entry into an enclave -----------------------------------------
    {
        "name": "session.started",
        "sources": _PORTAL + _HUB,
        "summary": "A user entered an enclave: a workspace session began.",
        "cannot_capture": "Who is physically at the keyboard or looking at the screen.",
        "ocsf": 3002,
        "fields": {
            "tier": _f("str", max_len=64),
            "factors": _f("str_list"),
            "session_id": _f("str", max_len=128),
            "session": _f("str", max_len=64, doc="hash prefix of the session id"),
            "amr": _f("str_list", max_len=16),
            "categories": _f("str_list", max_len=16),
        },
    },
    {
        "name": "session.ended",
        "sources": _PORTAL + _HUB,
        "summary": "A workspace session ended (logout, idle timeout or revocation).",
        "cannot_capture": "Activity on the user's own device after the session ended "
        "(screenshots, notes).",
        "ocsf": 3002,
        "fields": {
            "reason": _f("str", max_len=128),
            "session_id": _f("str", max_len=128),
            "duration_s": _f("int"),
            "session": _f("str", max_len=64, doc="hash prefix of the session id"),
            "user_id": _f("str", max_len=128),
        },
    },
    {
        "name": "session.denied",
        "sources": _PORTAL + _HUB,
        "summary": "Entry into an enclave was refused.",
        "cannot_capture": "Requests refused before reaching the component that records them.",
        "ocsf": 3002,
        "fields": {"reason": _f("str", required=True, max_len=256), "tier": _f("str", max_len=64)},
    },
    # --- workspace activity (OCSF API Activity 6003) --------------------------------
    {
        "name": "workspace.file.get",
        "sources": _WORKSPACE,
        "summary": "A file was read through the workspace's file API.",
        "cannot_capture": "Reads made inside a running kernel (e.g. open() in a notebook "
        "cell) that bypass the file API, and what was shown on screen.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "bytes": _f("int"),
            "sha256": _f("str", max_len=64),
        },
    },
    {
        "name": "workspace.file.put",
        "sources": _WORKSPACE,
        "summary": "A file was written through the workspace's file API.",
        "cannot_capture": "Writes made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "bytes": _f("int"),
            "sha256": _f("str", max_len=64),
        },
    },
    {
        "name": "workspace.file.delete",
        "sources": _WORKSPACE,
        "summary": "A file was deleted through the workspace's file API.",
        "cannot_capture": "Deletions made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {"path": _f("str", required=True, max_len=4096)},
    },
    {
        "name": "workspace.kernel.started",
        "sources": _WORKSPACE,
        "summary": "A compute kernel started in a workspace.",
        "cannot_capture": "The code the kernel runs (only its start and stop are recorded).",
        "ocsf": 6003,
        "fields": {"kernel": _f("str", max_len=128), "kernel_id": _f("str", max_len=128)},
    },
    {
        "name": "workspace.kernel.stopped",
        "sources": _WORKSPACE,
        "summary": "A compute kernel stopped.",
        "cannot_capture": "The code the kernel ran.",
        "ocsf": 6003,
        "fields": {"kernel_id": _f("str", max_len=128), "reason": _f("str", max_len=128)},
    },
    {
        "name": "workspace.egress.blocked",
        "sources": _CONTROLLER,
        "summary": "An outbound connection from a workspace was refused.",
        "cannot_capture": "Covert channels that do not open a connection (timing, screen capture).",
        "ocsf": 6003,
        "fields": {"destination": _f("str", max_len=512), "reason": _f("str", max_len=256)},
    },
    # --- export through the airlock ----------------------------------------------------
    {
        "name": "export.requested",
        "sources": _WORKSPACE,
        "summary": "A researcher asked to take a file out of the enclave.",
        "cannot_capture": "Information carried out of the enclave without a request "
        "(memorised or photographed).",
        "ocsf": 6003,
        "fields": {
            "request_id": _f("str", required=True, max_len=128),
            "path": _f("str", max_len=4096),
            "bytes": _f("int"),
            "sha256": _f("str", max_len=64),
        },
    },
    {
        "name": "export.scanned",
        "sources": _CONTROLLER,
        "summary": "An export request was scanned for malware and disclosure risk.",
        "cannot_capture": "Threats the scanner's signatures and rules do not know.",
        "ocsf": 6003,
        "fields": {
            "request_id": _f("str", required=True, max_len=128),
            "verdict": _f("str", required=True, max_len=64),
            "scanner": _f("str", max_len=128),
        },
    },
    {
        "name": "export.approved",
        "sources": _PORTAL,
        "summary": "An export request was approved by a reviewer.",
        "cannot_capture": "What the reviewer actually inspected before approving.",
        "ocsf": 6003,
        "fields": {
            "request_id": _f("str", required=True, max_len=128),
            "reviewer": _f("str", max_len=256),
            "sha256": _f("str", max_len=64),
        },
    },
    {
        "name": "export.rejected",
        "sources": _PORTAL,
        "summary": "An export request was rejected.",
        "cannot_capture": "Later attempts to carry the same content out by other means.",
        "ocsf": 6003,
        "fields": {
            "request_id": _f("str", required=True, max_len=128),
            "reviewer": _f("str", max_len=256),
            "reason": _f("str", max_len=512),
        },
    },
    {
        "name": "export.downloaded",
        "sources": _PORTAL,
        "summary": "An approved export was downloaded.",
        "cannot_capture": "Where the file went after it left the portal.",
        "ocsf": 6003,
        "fields": {
            "request_id": _f("str", required=True, max_len=128),
            "sha256": _f("str", max_len=64),
            "bytes": _f("int"),
        },
    },
    # --- controller: project and workspace lifecycle ------------------------------------
    {
        "name": "enclave.provisioned",
        "sources": _CONTROLLER,
        "summary": "The controller created or updated an enclave's resources.",
        "cannot_capture": "Changes made to the cluster directly, bypassing the controller.",
        "ocsf": 6003,
        "fields": {"tier": _f("str", max_len=64), "generation": _f("int"), "objects": _f("int")},
    },
    {
        "name": "enclave.deprovisioned",
        "sources": _CONTROLLER,
        "summary": "The controller removed an enclave's resources.",
        "cannot_capture": "Copies of data kept outside the enclave's volumes (backups, snapshots).",
        "ocsf": 6003,
        "fields": {"reason": _f("str", max_len=256)},
    },
    {
        "name": "enclave.drift_repaired",
        "sources": _CONTROLLER,
        "summary": "The controller put back objects of an enclave that someone had changed or "
        "removed in the cluster (a NetworkPolicy, a quota, the hub).",
        "cannot_capture": "Who changed them, and what traffic passed while they were changed.",
        "ocsf": 6003,
        "fields": {"objects": _f("int", doc="objects re-applied")},
    },
    {
        "name": "enclave.suspended",
        "sources": _CONTROLLER,
        "summary": "An enclave's approval ended (notAfter): hub stopped, ingress closed, "
        "members' sessions revoked where the portal is configured.",
        "cannot_capture": "Work a member still had open in a browser tab (it can no longer "
        "reach the hub).",
        "ocsf": 6003,
        "fields": {"reason": _f("str", max_len=256), "sessions_revoked": _f("int")},
    },
    {
        "name": "enclave.quarantined",
        "sources": _CONTROLLER,
        "summary": "An enclave was quarantined on an incident: all traffic denied, hub "
        "stopped; the actor is who asked for it.",
        "cannot_capture": "What happened before the quarantine (see the entries before it).",
        "ocsf": 6003,
        "fields": {
            "reason": _f("str", max_len=256, doc="required by 'enclave quarantine'"),
            "sessions_revoked": _f("int"),
        },
    },
    {
        "name": "enclave.quarantine_lifted",
        "sources": _CONTROLLER,
        "summary": "A quarantine was lifted; the actor is who lifted it.",
        "cannot_capture": "The incident review behind the decision.",
        "ocsf": 6003,
        "fields": {"reason": _f("str", max_len=256, doc="required by 'enclave quarantine'")},
    },
    {
        "name": "enclave.end_of_use",
        "sources": _CONTROLLER,
        "summary": "End of use (NBDC-U7 2.3 item 12, NBDC-S8 5.3.3): the enclave's workspace "
        "volumes were destroyed; recorded before its namespace is removed.",
        "cannot_capture": "Copies outside the volumes the product made (backups the operator "
        "takes, the dataset sources); physical destruction of the disks.",
        "ocsf": 6003,
        "fields": {
            "reason": _f("str", max_len=256),
            "tier": _f("str", max_len=64),
            "volumes_destroyed": _f("bool"),
            "not_after": _f("str", max_len=64),
        },
    },
    {
        "name": "enclave.member.added",
        "sources": _CONTROLLER,
        "summary": "A researcher was granted access to an enclave.",
        "cannot_capture": "The approval paperwork behind the grant.",
        "ocsf": 6003,
        "fields": {"member": _f("str", required=True, max_len=256), "role": _f("str", max_len=64)},
    },
    {
        "name": "enclave.member.removed",
        "sources": _CONTROLLER,
        "summary": "A researcher's access to an enclave was withdrawn.",
        "cannot_capture": "Sessions already open elsewhere until they are revoked (see "
        "session.ended).",
        "ocsf": 6003,
        "fields": {
            "member": _f("str", required=True, max_len=256),
            "reason": _f("str", max_len=256),
        },
    },
    # --- the audit log itself -----------------------------------------------------------
    {
        "name": "audit.read",
        "sources": _AUDIT,
        "summary": "An officer read audit records (a search, an event page, an export).",
        "cannot_capture": "What the officer did with the records afterwards.",
        "ocsf": 6003,
        "fields": {
            "view": _f("str", required=True, max_len=64),
            "query": _f("str", max_len=4096),
            "results": _f("int"),
            "format": _f("str", max_len=16),
        },
    },
    {
        "name": "audit.verified",
        "sources": _AUDIT,
        "summary": "The whole log was verified against its hashes and signatures.",
        "cannot_capture": "Entries removed from the tail after the last checkpoint kept "
        "outside the store.",
        "ocsf": 6003,
        "fields": {
            "size": _f("int"),
            "result": _f("str", max_len=64),
            "first_bad_index": _f("int"),
        },
    },
    {
        "name": "audit.verify.started",
        "sources": _AUDIT,
        "summary": "An officer started a whole-log verification in the audit service.",
        "cannot_capture": "Verifications run outside the service (enclave audit verify).",
        "ocsf": 6003,
        "fields": {"size": _f("int"), "job": _f("str", max_len=64)},
    },
    {
        "name": "audit.checkpoint.published",
        "sources": _AUDIT,
        "summary": "A signed checkpoint was published or exported for witnessing.",
        "cannot_capture": "Whether any witness actually stored the checkpoint.",
        "ocsf": 6003,
        "fields": {"size": _f("int"), "destination": _f("str", max_len=1024)},
    },
    {
        "name": "audit.token.issued",
        "sources": _CLI,
        "summary": "An intake token for a source was issued or rotated.",
        "cannot_capture": "Copies of the token made by whoever received it.",
        "ocsf": 6003,
        "fields": {
            "token_id": _f("str", required=True, max_len=128),
            "for_source": _f("str", max_len=64),
        },
    },
    {
        "name": "audit.token.revoked",
        "sources": _CLI,
        "summary": "An intake token was revoked.",
        "cannot_capture": "Events sent with the token before revocation that were never delivered.",
        "ocsf": 6003,
        "fields": {
            "token_id": _f("str", required=True, max_len=128),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "audit.intake.rejected",
        "sources": _AUDIT,
        "summary": "The audit service rejected a batch of events (bad token or bad input).",
        "cannot_capture": "The rejected events themselves (only the reason is kept).",
        "ocsf": 6003,
        "fields": {"reason": _f("str", required=True, max_len=256), "count": _f("int")},
    },
    # --- the portal (source=portal): enrolment, factors, entry, OIDC, administration ---
    {
        "name": "auth.invitation.accepted",
        "sources": _PORTAL,
        "summary": "An invitation code was redeemed and the account activated.",
        "cannot_capture": "Who typed the code: it may have been passed on.",
        "ocsf": 3002,
        "fields": {},
    },
    {
        "name": "auth.invitation.rejected",
        "sources": _PORTAL,
        "summary": "An invitation code was refused (unknown, used or expired).",
        "cannot_capture": "The code that was tried (never logged).",
        "ocsf": 3002,
        "fields": {"reason": _f("str", max_len=256)},
    },
    {
        "name": "auth.enrolment.password",
        "sources": _PORTAL,
        "summary": "A user set the password of their account.",
        "cannot_capture": "The password itself, or whether it is reused elsewhere.",
        "ocsf": 3002,
        "fields": {"factor": _f("str", choices=_FACTOR_KINDS), "category": _CATEGORY_FIELD},
    },
    {
        "name": "auth.enrolment.totp",
        "sources": _PORTAL,
        "summary": "A user enrolled (or failed to enrol) an authenticator app.",
        "cannot_capture": "The device the secret was stored on, or copies of the QR code.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", choices=_FACTOR_KINDS),
            "category": _CATEGORY_FIELD,
            "credential": _f("str", max_len=128),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "auth.enrolment.webauthn",
        "sources": _PORTAL,
        "summary": "A user registered (or failed to register) a WebAuthn authenticator.",
        "cannot_capture": "The authenticator's model beyond its attested AAGUID; whether a "
        "synced passkey has been copied to other devices.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", choices=_FACTOR_KINDS),
            "category": _CATEGORY_FIELD,
            "credential": _f("str", max_len=128),
            "aaguid": _f("str", max_len=64),
            "attestation": _f("str", max_len=64),
            "user_verified": _f("bool"),
            "backup_eligible": _f("bool"),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "auth.factor.refused",
        "sources": _PORTAL,
        "summary": "A factor attempt was refused without checking it (throttled or disabled).",
        "cannot_capture": "The secret that was presented (never checked, never logged).",
        "ocsf": 3002,
        "fields": {"factor": _f("str", max_len=32), "reason": _f("str", max_len=256)},
    },
    {
        "name": "auth.authenticator.disabled",
        "sources": _PORTAL,
        "summary": "An authenticator was disabled after too many consecutive failures.",
        "cannot_capture": "Whether the failures came from its owner or an attacker.",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", choices=_FACTOR_KINDS),
            "credential": _f("str", max_len=128),
            "failures": _f("int"),
        },
    },
    {
        "name": "auth.webauthn.rejected",
        "sources": _PORTAL,
        "summary": "A WebAuthn payload was refused before verification (malformed, oversized, "
        "unknown credential, stale or reused challenge).",
        "cannot_capture": "The payload itself (only the reason is kept).",
        "ocsf": 3002,
        "fields": {"ceremony": _f("str", max_len=32), "reason": _f("str", max_len=256)},
    },
    {
        "name": "session.stepped_up",
        "version": 2,
        "sources": _PORTAL,
        "summary": "A session proved one more factor to enter a stricter enclave or to "
        "meet a client's tier; its session id was rotated.",
        "cannot_capture": "Who held the factor (see auth.factor.verified).",
        "ocsf": 3002,
        "fields": {
            "factor": _f("str", choices=_FACTOR_KINDS),
            "category": _CATEGORY_FIELD,
            "session": _f("str", max_len=64, doc="v2: the new session id's hash prefix"),
        },
    },
    {
        "name": "enclave.entry.allowed",
        "sources": _PORTAL,
        "summary": "The portal let a user enter an enclave, with the factors proven.",
        "cannot_capture": "What the user did inside (see hub and workspace events).",
        "ocsf": 3002,
        "fields": {
            "acr": _f("str", max_len=64),
            "amr": _f("str_list", max_len=16),
            "categories": _f("str_list", max_len=16),
        },
    },
    {
        "name": "enclave.entry.refused",
        "sources": _PORTAL,
        "summary": "The portal refused entry to an enclave, with every reason.",
        "cannot_capture": "Attempts that bypassed the portal (there is no other way in).",
        "ocsf": 3002,
        "fields": {"reasons": _f("str_list", max_len=512)},
    },
    {
        "name": "enclave.stepup.required",
        "sources": _PORTAL,
        "summary": "Entering an enclave needs more factors than the session proved.",
        "cannot_capture": "Whether the user then completed the step-up (see session.stepped_up).",
        "ocsf": 3002,
        "fields": {"reasons": _f("str_list", max_len=512)},
    },
    {
        "name": "oidc.authorize.refused",
        "sources": _PORTAL,
        "summary": "An OIDC authorization request was refused.",
        "cannot_capture": "Requests that never reached the portal.",
        "ocsf": 3002,
        "fields": {
            "client_id": _f("str", max_len=128),
            "reason": _f("str", max_len=512),
            "tier": _f("str", max_len=64, doc="v2: the tier the client demands"),
            "reasons": _f("str_list", max_len=512, doc="v2: why the session falls short"),
        },
        "version": 2,
    },
    {
        "name": "oidc.authorize.stepup",
        "sources": _PORTAL,
        "summary": "An OIDC authorization needs more factors before a code is issued.",
        "cannot_capture": "Whether the user completed the step-up.",
        "ocsf": 3002,
        "fields": {
            "client_id": _f("str", max_len=128),
            "reasons": _f("str_list", max_len=512),
            "tier": _f("str", max_len=64, doc="v2: the tier the client demands"),
        },
        "version": 2,
    },
    {
        "name": "oidc.code.issued",
        "sources": _PORTAL,
        "summary": "An authorization code was issued to a registered client.",
        "cannot_capture": "The code itself (only its hash is stored).",
        "ocsf": 3002,
        "fields": {"client_id": _f("str", max_len=128)},
    },
    {
        "name": "oidc.token.issued",
        "sources": _PORTAL,
        "summary": "An ID token was issued, with the factors it carries.",
        "cannot_capture": "How the client uses the token after issue.",
        "ocsf": 3002,
        "fields": {
            "client_id": _f("str", max_len=128),
            "acr": _f("str", max_len=64),
            "amr": _f("str_list", max_len=16),
            "enclave_factors": _f("str_list", max_len=16),
        },
    },
    {
        "name": "oidc.token.refused",
        "sources": _PORTAL,
        "summary": "A token request was refused (bad code, verifier or client).",
        "cannot_capture": "The code or verifier presented (never logged).",
        "ocsf": 3002,
        "fields": {
            "reason": _f("str", max_len=256),
            "client_id": _f("str", max_len=128, doc="v2: the authenticated client"),
        },
        "version": 2,
    },
    {
        "name": "oidc.client.auth_failed",
        "sources": _PORTAL,
        "summary": "An OIDC client failed to authenticate at the token endpoint.",
        "cannot_capture": "The secret presented (never logged).",
        "ocsf": 3002,
        "fields": {"client_id": _f("str", max_len=128)},
    },
    {
        "name": "web.csrf.rejected",
        "sources": _PORTAL,
        "summary": "A form post without a valid CSRF token was refused.",
        "cannot_capture": "The site that made the browser send it.",
        "ocsf": 6003,
        "fields": {"path": _f("str", max_len=256)},
    },
    {
        "name": "web.request.rejected",
        "sources": _PORTAL,
        "summary": "A request with a malformed field was refused (4xx).",
        "cannot_capture": "The rejected value (only the field and reason are kept).",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", max_len=256),
            "field": _f("str", max_len=128),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "admin.user.invited",
        "version": 2,
        "sources": _PORTAL,
        "summary": "An officer or admin invited a person (or was refused: account in use).",
        "cannot_capture": "How the invitation code was handed over.",
        "ocsf": 6003,
        "fields": {
            "user": _f("str", max_len=256),
            "roles": _f("str_list", max_len=32),
            "expires_at": _f("int"),
            "invitations_cancelled": _f("int", doc="older codes of the account cancelled"),
            "reason": _f("str", max_len=256, doc="why a re-invitation was refused"),
        },
    },
    {
        "name": "admin.user.disabled",
        "version": 2,
        "sources": _PORTAL,
        "summary": "An officer or admin disabled a person (their sessions end).",
        "cannot_capture": "Tokens already issued to hubs before this moment.",
        "ocsf": 6003,
        "fields": {
            "user": _f("str", max_len=256),
            "sessions_revoked": _f("int"),
            "invitations_cancelled": _f("int", doc="outstanding codes cancelled"),
        },
    },
    {
        "name": "admin.user.rebound",
        "version": 2,
        "sources": _PORTAL,
        "summary": "Officer-assisted recovery: a person's factors were dropped and re-invited.",
        "cannot_capture": "How the officer established the person's identity.",
        "ocsf": 6003,
        "fields": {
            "user": _f("str", max_len=256),
            "invitations_cancelled": _f("int", doc="older codes cancelled"),
        },
    },
    {
        "name": "admin.credential.approved",
        "sources": _PORTAL,
        "summary": "An officer approved an enrolled factor for high and strong tiers.",
        "cannot_capture": "What the officer checked before approving.",
        "ocsf": 6003,
        "fields": {
            "user": _f("str", max_len=256),
            "credential": _f("str", max_len=128),
            "factor": _f("str", choices=_FACTOR_KINDS),
            "aaguid": _f("str", max_len=64, doc="v2: the approved key's model (WebAuthn)"),
        },
        "version": 2,
    },
    {
        "name": "admin.enclave.registered",
        "sources": _PORTAL,
        "summary": "An enclave's tier, members, networks or hub client were registered.",
        "cannot_capture": "The approval documents behind the membership.",
        "ocsf": 6003,
        "fields": {
            "tier": _f("str", max_len=32),
            "members_added": _f("str_list", max_len=256),
            "members_removed": _f("str_list", max_len=256),
            "networks": _f("str_list", max_len=64),
            "client_id": _f("str", max_len=128),
            "client_secret_issued": _f("bool"),
        },
    },
    {
        "name": "admin.enclave.removed",
        "sources": _PORTAL,
        "summary": "An enclave was removed from the portal's registry.",
        "cannot_capture": "What happened to its workspace (see controller events).",
        "ocsf": 6003,
        "fields": {},
    },
    {
        "name": "admin.client.registered",
        "sources": _PORTAL,
        "summary": "An OIDC client (a hub or the audit UI) was registered.",
        "cannot_capture": "Where the client secret was stored afterwards.",
        "ocsf": 6003,
        "fields": {
            "client_id": _f("str", max_len=128),
            "redirect_uris": _f("str_list", max_len=512),
            "tier": _f("str", max_len=64, doc="v2: the tier the client demands"),
        },
        "version": 2,
    },
    {
        "name": "admin.signing_key.rotated",
        "sources": _PORTAL,
        "summary": "The portal's token signing key was rotated.",
        "cannot_capture": "Copies of the old private key (sealed at rest, never exported).",
        "ocsf": 6003,
        "fields": {"kid": _f("str", max_len=128)},
    },
    {
        "name": "admin.keys.resealed",
        "sources": _PORTAL,
        "summary": "Secrets at rest were re-encrypted under the first key of the key ring.",
        "cannot_capture": "Whether the retired key was destroyed afterwards.",
        "ocsf": 6003,
        "fields": {"count": _f("int")},
    },
    {
        "name": "admin.store.migrated",
        "version": 2,
        "sources": _PORTAL,
        "summary": "The portal's identity store schema was migrated to a newer version.",
        "cannot_capture": "Whether a backup was taken before the migration.",
        "ocsf": 6003,
        "fields": {
            "version": _f("int", required=True),
            "applied": _f("str", required=True, max_len=1024),
            "notes": _f("str", max_len=4096, doc="what data steps changed (disabled accounts)"),
        },
    },
    {
        "name": "admin.auth.failed",
        "sources": _PORTAL,
        "summary": "A request to the admin API carried no valid admin token.",
        "cannot_capture": "The token presented (never logged).",
        "ocsf": 6003,
        "fields": {},
    },
    # --- workspaces (issue #15): the hub (source=hub) and the hardened single-user
    # server (source=workspace). One self-contained block; allowed sources: hub.* from
    # the hub only, workspace.* from the workspace only.
    {
        "name": "hub.login.allowed",
        "sources": _HUB,
        "summary": "An enclave's hub let a member in: the portal's ID token was verified and "
        "its factors satisfy the tier.",
        "cannot_capture": "Who is at the keyboard; what the portal verified beyond the token's "
        "claims (see the portal's auth.factor.verified events).",
        "ocsf": 3002,
        "fields": {
            "tier": _f("str", max_len=64),
            "acr": _f("str", max_len=64),
            "amr": _f("str_list", max_len=16),
            "categories": _f("str_list", max_len=16),
        },
    },
    {
        "name": "hub.login.refused",
        "sources": _HUB,
        "summary": "An enclave's hub refused entry (bad token, not a member, factors short of "
        "the tier, or the portal's own refusal), with every reason.",
        "cannot_capture": "Requests refused before reaching the hub (the proxy, the network); "
        "the token itself (never logged).",
        "ocsf": 3002,
        "fields": {
            "stage": _f(
                "str",
                required=True,
                choices=("portal", "token", "membership", "factors", "audit"),
                doc="which check refused",
            ),
            "reasons": _f("str_list", max_len=512),
            "tier": _f("str", max_len=64),
        },
    },
    {
        "name": "hub.server.started",
        "sources": _HUB,
        "summary": "The hub's spawner started a member's single-user server.",
        "cannot_capture": "Whether the server then answered (a server that never answers is "
        "stopped by the hub and recorded as hub.server.stopped).",
        "ocsf": 6003,
        "fields": {"spawner": _f("str", max_len=128)},
    },
    {
        "name": "hub.server.stopped",
        "sources": _HUB,
        "summary": "The hub stopped a member's single-user server (the member, the idle culler, "
        "the session limit or a shutdown).",
        "cannot_capture": "Which of those asked for the stop; work done on the screen before it.",
        "ocsf": 6003,
        "fields": {"spawner": _f("str", max_len=128)},
    },
    {
        "name": "hub.spawn.failed",
        "sources": _HUB,
        "summary": "The hub's spawner failed to start a member's single-user server.",
        "cannot_capture": "Failures after the spawner returned (the server not answering).",
        "ocsf": 6003,
        "fields": {
            "spawner": _f("str", max_len=128),
            "reason": _f("str", required=True, max_len=512),
        },
    },
    {
        "name": "workspace.file.created",
        "sources": _WORKSPACE,
        "summary": "A file or directory was created through the workspace's file API.",
        "cannot_capture": "Files created inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "type": _f("str", max_len=32),
        },
    },
    {
        "name": "workspace.file.renamed",
        "sources": _WORKSPACE,
        "summary": "A file was renamed or moved through the workspace's file API.",
        "cannot_capture": "Renames made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "new_path": _f("str", required=True, max_len=4096),
        },
    },
    {
        "name": "workspace.file.copied",
        "sources": _WORKSPACE,
        "summary": "A file was copied through the workspace's file API.",
        "cannot_capture": "Copies made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "new_path": _f("str", max_len=4096),
        },
    },
    {
        "name": "workspace.file.uploaded",
        "sources": _WORKSPACE,
        "summary": "A file was uploaded from the browser into the workspace.",
        "cannot_capture": "What the file contains beyond its size and hash (see the airlock "
        "for scanned imports).",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "bytes": _f("int"),
        },
    },
    {
        "name": "workspace.download.refused",
        "sources": _WORKSPACE,
        "summary": "The workspace refused to send file bytes to the browser as a file "
        "(/files, nbconvert, a Content-Disposition attachment, or raw dataset content over "
        "the tier's size).",
        "cannot_capture": "What the browser shows on screen (the kernel's output and the "
        "notebook view are not downloads), screen capture on the researcher's device.",
        "ocsf": 6003,
        "fields": {
            "path": _f("str", required=True, max_len=4096),
            "route": _f(
                "str",
                required=True,
                choices=("files", "nbconvert", "attachment", "contents"),
            ),
            "reason": _f("str", max_len=256),
        },
    },
    {
        "name": "workspace.terminal.refused",
        "sources": _WORKSPACE,
        "summary": "A request for a Jupyter terminal was refused: the tier turns terminals off.",
        "cannot_capture": "Shell commands run through a kernel (e.g. subprocess in a cell).",
        "ocsf": 6003,
        "fields": {"path": _f("str", required=True, max_len=4096)},
    },
    {
        "name": "workspace.code.executed",
        "sources": _WORKSPACE,
        "summary": "A code-execution request was sent to a kernel (tiers that record every "
        "operation); the code is capped, its SHA-256 covers all of it.",
        "cannot_capture": "What the code did or printed; code a kernel runs without a request "
        "(threads or processes it started earlier).",
        "ocsf": 6003,
        "fields": {
            "kernel_id": _f("str", max_len=128),
            "code": _f(
                "str",
                required=True,
                max_len=8192,
                doc="the first 8192 characters",
                multiline=True,
            ),
            "sha256": _f("str", required=True, max_len=64),
            "bytes": _f("int"),
        },
    },
    # --- the screen channel, measured (issue #15): bytes the single-user server sent to
    # the browser in one server session, counted where they leave it (kernel and terminal
    # websocket messages, contents API response bodies), against the tier's screen_output
    # budget.
    *(
        {
            "name": name,
            "sources": _WORKSPACE,
            "summary": summary,
            "cannot_capture": "What the bytes showed, the pixels on the screen, what a camera "
            "or a person beside the researcher sees, and what the researcher remembers; "
            "bytes of other sessions (each server start begins a new count).",
            "ocsf": 6003,
            "fields": {
                "kernel_bytes": _f("int", required=True, doc="kernel websocket messages sent"),
                "contents_bytes": _f("int", required=True, doc="contents API bodies sent"),
                "terminal_bytes": _f("int", doc="terminal websocket messages sent"),
                "total_bytes": _f("int", required=True),
                "refused_bytes": _f("int", doc="output not sent: past the budget"),
                "refused_messages": _f("int"),
                "warn_bytes": _f("int"),
                "budget_bytes": _f("int"),
                "past_budget": _f("str", choices=("refuse_output", "stop_session")),
                "channel": _f(
                    "str", choices=("kernel", "contents", "terminal"), doc="what crossed"
                ),
                "final": _f("bool", doc="the record written as the server stops"),
            },
        }
        for name, summary in (
            (
                "workspace.screen_output",
                "Bytes a workspace session sent to the browser so far, by channel "
                "(periodically while they change, and once as the server stops).",
            ),
            (
                "workspace.screen_output.warned",
                "A workspace session reached the warning threshold of its tier's "
                "screen-output budget; the researcher was told.",
            ),
            (
                "workspace.screen_output.exceeded",
                "Output that would take a workspace session past its tier's screen-output "
                "budget was not sent; the researcher was told, and the server stops where "
                "the tier says so.",
            ),
        )
    ),
]


def _build() -> MappingProxyType[str, ActionSpec]:
    out: dict[str, ActionSpec] = {}
    for raw in _SPECS:
        name = str(raw["name"])
        fields = raw["fields"]
        assert isinstance(fields, dict)
        ocsf = raw.get("ocsf")
        sources = raw["sources"]  # required: an action names who may send it
        if not isinstance(sources, tuple) or not sources or not set(sources) <= ACTION_SOURCES:
            raise ValueError(f"action {name}: sources must name some of {sorted(ACTION_SOURCES)}")
        out[name] = ActionSpec(
            name=name,
            version=int(raw.get("version", 1)),  # type: ignore[call-overload]
            summary=str(raw["summary"]),
            cannot_capture=str(raw["cannot_capture"]),
            fields=MappingProxyType(dict(fields)),
            sources=frozenset(sources),
            ocsf_class=int(ocsf) if isinstance(ocsf, int) else None,
        )
    return MappingProxyType(out)


ACTIONS: MappingProxyType[str, ActionSpec] = _build()
"""Every registered action, by name."""


def action_spec(name: str) -> ActionSpec | None:
    """The registered spec for ``name``, or ``None`` when it is not registered."""
    return ACTIONS.get(name)
