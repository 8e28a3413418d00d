"""Registry entries: authentication, sessions, workspace activity, export through the
airlock, the controller's project and workspace lifecycle, and the audit log itself."""

from __future__ import annotations

from ._actions_schema import (
    AUDIT,
    CATEGORY_FIELD,
    CLI,
    CONTROLLER,
    FACTOR_KINDS,
    HUB,
    PORTAL,
    WORKSPACE,
    RawSpec,
    field,
)

#: A file read or written through the workspace's file API: which, how big, its digest.
_FILE_CONTENT_FIELDS = {
    "path": field("str", required=True, max_len=4096),
    "bytes": field("int"),
    "sha256": field("str", max_len=64),
}

CORE_SPECS: list[RawSpec] = [
    # --- authentication (OCSF Authentication 3002) --------------------------------
    {
        "name": "auth.login.started",
        "sources": PORTAL,
        "summary": "A login attempt began at the portal.",
        "cannot_capture": "Attempts that never reached the portal (blocked by a proxy or WAF) "
        "are not seen.",
        "ocsf": 3002,
        "fields": {"method": field("str", max_len=64), "user_agent": field("str", max_len=512)},
    },
    {
        "name": "auth.factor.verified",
        "sources": PORTAL + AUDIT,
        "summary": "One authentication factor was verified.",
        "cannot_capture": "Whether the person holding the factor is its registered owner (a "
        "shared or stolen authenticator looks the same).",
        "ocsf": 3002,
        "fields": {
            "factor": field("str", required=True, choices=FACTOR_KINDS),
            "category": CATEGORY_FIELD,
            "credential": field("str", max_len=128),
            "user_verified": field("bool"),
            "biometric_attested": field("bool"),
            "backup_eligible": field("bool"),
            "aal": field("int"),
            "credential_id": field("str", max_len=256),
            "user_agent": field("str", max_len=512),
        },
    },
    {
        "name": "auth.factor.failed",
        "sources": PORTAL + AUDIT,
        "summary": "An authentication factor was presented and rejected.",
        "cannot_capture": "The secret that was tried (never logged), or failures the client "
        "rejected before contacting the server.",
        "ocsf": 3002,
        "fields": {
            "factor": field("str", required=True, choices=FACTOR_KINDS),
            "reason": field("str", required=True, max_len=256),
            "failures_in_window": field("int"),
            "category": CATEGORY_FIELD,
            "credential": field("str", max_len=128),
            "consecutive_failures": field("int"),
        },
    },
    {
        "name": "auth.lockout",
        "sources": PORTAL + AUDIT,
        "summary": "An account was locked after repeated failures.",
        "cannot_capture": "Whether the failures came from the account holder or an attacker.",
        "ocsf": 3002,
        "fields": {
            "until": field("str", max_len=64),
            "failures": field("int"),
            "reason": field("str", max_len=256),
        },
    },
    {
        "name": "auth.factor.enrolled",
        "sources": PORTAL,
        "summary": "A new authentication factor was registered for a user.",
        "cannot_capture": "The physical custody of the enrolled authenticator.",
        "ocsf": 3002,
        "fields": {
            "factor": field("str", required=True, choices=FACTOR_KINDS),
            "credential_id": field("str", max_len=256),
            "aaguid": field("str", max_len=64),
        },
    },
    {
        "name": "auth.factor.revoked",
        "sources": PORTAL,
        "summary": "An authentication factor was removed.",
        "cannot_capture": "Copies of a software factor (e.g. a TOTP seed) made before revocation.",
        "ocsf": 3002,
        "fields": {
            "factor": field("str", required=True, choices=FACTOR_KINDS),
            "credential_id": field("str", max_len=256),
            "reason": field("str", max_len=256),
        },
    },
    {
        "name": "auth.logout",
        "sources": PORTAL + AUDIT,
        "summary": "A user ended their portal session.",
        "cannot_capture": "Sessions that simply expired (see session.ended).",
        "ocsf": 3002,
        "fields": {},
    },
    # --- sessions and entry into an enclave -----------------------------------------
    {
        "name": "session.started",
        "sources": PORTAL + HUB,
        "summary": "A user entered an enclave: a workspace session began.",
        "cannot_capture": "Who is physically at the keyboard or looking at the screen.",
        "ocsf": 3002,
        "fields": {
            "tier": field("str", max_len=64),
            "factors": field("str_list"),
            "session_id": field("str", max_len=128),
            "session": field("str", max_len=64, doc="hash prefix of the session id"),
            "amr": field("str_list", max_len=16),
            "categories": field("str_list", max_len=16),
        },
    },
    {
        "name": "session.ended",
        "sources": PORTAL + HUB,
        "summary": "A workspace session ended (logout, idle timeout or revocation).",
        "cannot_capture": "Activity on the user's own device after the session ended "
        "(screenshots, notes).",
        "ocsf": 3002,
        "fields": {
            "reason": field("str", max_len=128),
            "session_id": field("str", max_len=128),
            "duration_s": field("int"),
            "session": field("str", max_len=64, doc="hash prefix of the session id"),
            "user_id": field("str", max_len=128),
        },
    },
    {
        "name": "session.denied",
        "sources": PORTAL + HUB,
        "summary": "Entry into an enclave was refused.",
        "cannot_capture": "Requests refused before reaching the component that records them.",
        "ocsf": 3002,
        "fields": {
            "reason": field("str", required=True, max_len=256),
            "tier": field("str", max_len=64),
        },
    },
    # --- workspace activity (OCSF API Activity 6003) --------------------------------
    {
        "name": "workspace.file.get",
        "sources": WORKSPACE,
        "summary": "A file was read through the workspace's file API.",
        "cannot_capture": "Reads made inside a running kernel (e.g. open() in a notebook "
        "cell) that bypass the file API, and what was shown on screen.",
        "ocsf": 6003,
        "fields": _FILE_CONTENT_FIELDS,
    },
    {
        "name": "workspace.file.put",
        "sources": WORKSPACE,
        "summary": "A file was written through the workspace's file API.",
        "cannot_capture": "Writes made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": _FILE_CONTENT_FIELDS,
    },
    {
        "name": "workspace.file.delete",
        "sources": WORKSPACE,
        "summary": "A file was deleted through the workspace's file API.",
        "cannot_capture": "Deletions made inside a running kernel that bypass the file API.",
        "ocsf": 6003,
        "fields": {"path": field("str", required=True, max_len=4096)},
    },
    {
        "name": "workspace.kernel.started",
        "sources": WORKSPACE,
        "summary": "A compute kernel started in a workspace.",
        "cannot_capture": "The code the kernel runs (only its start and stop are recorded).",
        "ocsf": 6003,
        "fields": {"kernel": field("str", max_len=128), "kernel_id": field("str", max_len=128)},
    },
    {
        "name": "workspace.kernel.stopped",
        "sources": WORKSPACE,
        "summary": "A compute kernel stopped.",
        "cannot_capture": "The code the kernel ran.",
        "ocsf": 6003,
        "fields": {"kernel_id": field("str", max_len=128), "reason": field("str", max_len=128)},
    },
    {
        "name": "workspace.egress.blocked",
        "sources": CONTROLLER,
        "summary": "An outbound connection from a workspace was refused.",
        "cannot_capture": "Covert channels that do not open a connection (timing, screen capture).",
        "ocsf": 6003,
        "fields": {"destination": field("str", max_len=512), "reason": field("str", max_len=256)},
    },
    # --- export through the airlock ----------------------------------------------------
    {
        "name": "export.requested",
        "sources": WORKSPACE,
        "summary": "A researcher asked to take a file out of the enclave.",
        "cannot_capture": "Information carried out of the enclave without a request "
        "(memorised or photographed).",
        "ocsf": 6003,
        "fields": {
            "request_id": field("str", required=True, max_len=128),
            "path": field("str", max_len=4096),
            "bytes": field("int"),
            "sha256": field("str", max_len=64),
        },
    },
    {
        "name": "export.scanned",
        "sources": CONTROLLER,
        "summary": "An export request was scanned for malware and disclosure risk.",
        "cannot_capture": "Threats the scanner's signatures and rules do not know.",
        "ocsf": 6003,
        "fields": {
            "request_id": field("str", required=True, max_len=128),
            "verdict": field("str", required=True, max_len=64),
            "scanner": field("str", max_len=128),
        },
    },
    {
        "name": "export.approved",
        "sources": PORTAL,
        "summary": "An export request was approved by a reviewer.",
        "cannot_capture": "What the reviewer actually inspected before approving.",
        "ocsf": 6003,
        "fields": {
            "request_id": field("str", required=True, max_len=128),
            "reviewer": field("str", max_len=256),
            "sha256": field("str", max_len=64),
        },
    },
    {
        "name": "export.rejected",
        "sources": PORTAL,
        "summary": "An export request was rejected.",
        "cannot_capture": "Later attempts to carry the same content out by other means.",
        "ocsf": 6003,
        "fields": {
            "request_id": field("str", required=True, max_len=128),
            "reviewer": field("str", max_len=256),
            "reason": field("str", max_len=512),
        },
    },
    {
        "name": "export.downloaded",
        "sources": PORTAL,
        "summary": "An approved export was downloaded.",
        "cannot_capture": "Where the file went after it left the portal.",
        "ocsf": 6003,
        "fields": {
            "request_id": field("str", required=True, max_len=128),
            "sha256": field("str", max_len=64),
            "bytes": field("int"),
        },
    },
    # --- controller: project and workspace lifecycle ------------------------------------
    {
        "name": "enclave.provisioned",
        "sources": CONTROLLER,
        "summary": "The controller created or updated an enclave's resources.",
        "cannot_capture": "Changes made to the cluster directly, bypassing the controller.",
        "ocsf": 6003,
        "fields": {
            "tier": field("str", max_len=64),
            "generation": field("int"),
            "objects": field("int"),
        },
    },
    {
        "name": "enclave.deprovisioned",
        "sources": CONTROLLER,
        "summary": "The controller removed an enclave's resources.",
        "cannot_capture": "Copies of data kept outside the enclave's volumes (backups, snapshots).",
        "ocsf": 6003,
        "fields": {"reason": field("str", max_len=256)},
    },
    {
        "name": "enclave.refused",
        "sources": CONTROLLER,
        "summary": "The controller refused an Enclave definition (a file of the local "
        "backend): nothing of it is served until the file is corrected. Recorded once per "
        "version of the file.",
        "cannot_capture": "Who wrote the file, and definitions the Kubernetes API server "
        "refused itself (the CRD's schema) before the controller saw them.",
        "ocsf": 6003,
        "fields": {
            "file": field("str", max_len=256),
            "field": field("str", max_len=128),
            "reason": field("str", max_len=256),
        },
    },
    {
        "name": "enclave.drift_repaired",
        "sources": CONTROLLER,
        "summary": "The controller put back objects of an enclave that someone had changed or "
        "removed in the cluster (a NetworkPolicy, a quota, the hub).",
        "cannot_capture": "Who changed them, and what traffic passed while they were changed.",
        "ocsf": 6003,
        "fields": {"objects": field("int", doc="objects re-applied")},
    },
    {
        "name": "enclave.suspended",
        "sources": CONTROLLER,
        "summary": "An enclave's approval ended (notAfter): hub stopped, ingress closed, "
        "members' sessions revoked where the portal is configured.",
        "cannot_capture": "Work a member still had open in a browser tab (it can no longer "
        "reach the hub).",
        "ocsf": 6003,
        "fields": {"reason": field("str", max_len=256), "sessions_revoked": field("int")},
    },
    {
        "name": "enclave.quarantined",
        "sources": CONTROLLER,
        "summary": "An enclave was quarantined on an incident: all traffic denied, hub "
        "stopped; the actor is who asked for it.",
        "cannot_capture": "What happened before the quarantine (see the entries before it).",
        "ocsf": 6003,
        "fields": {
            "reason": field("str", max_len=256, doc="required by 'enclave quarantine'"),
            "sessions_revoked": field("int"),
        },
    },
    {
        "name": "enclave.quarantine_lifted",
        "sources": CONTROLLER,
        "summary": "A quarantine was lifted; the actor is who lifted it.",
        "cannot_capture": "The incident review behind the decision.",
        "ocsf": 6003,
        "fields": {"reason": field("str", max_len=256, doc="required by 'enclave quarantine'")},
    },
    {
        "name": "enclave.end_of_use",
        "sources": CONTROLLER,
        "summary": "End of use (NBDC-U7 2.3 item 12, NBDC-S8 §5.3.3 item 10): the enclave's "
        "workspace volumes were destroyed; recorded before its namespace is removed.",
        "cannot_capture": "Copies outside the volumes the product made (backups the operator "
        "takes, the dataset sources); physical destruction of the disks.",
        "ocsf": 6003,
        "fields": {
            "reason": field("str", max_len=256),
            "tier": field("str", max_len=64),
            "volumes_destroyed": field("bool"),
            "not_after": field("str", max_len=64),
        },
    },
    {
        "name": "enclave.member.added",
        "sources": CONTROLLER,
        "summary": "A researcher was granted access to an enclave.",
        "cannot_capture": "The approval paperwork behind the grant.",
        "ocsf": 6003,
        "fields": {
            "member": field("str", required=True, max_len=256),
            "role": field("str", max_len=64),
        },
    },
    {
        "name": "enclave.member.removed",
        "sources": CONTROLLER,
        "summary": "A researcher's access to an enclave was withdrawn.",
        "cannot_capture": "Sessions already open elsewhere until they are revoked (see "
        "session.ended).",
        "ocsf": 6003,
        "fields": {
            "member": field("str", required=True, max_len=256),
            "reason": field("str", max_len=256),
        },
    },
    # --- the audit log itself -----------------------------------------------------------
    {
        "name": "audit.read",
        "sources": AUDIT,
        "summary": "An officer read audit records (a search, an event page, an export).",
        "cannot_capture": "What the officer did with the records afterwards.",
        "ocsf": 6003,
        "fields": {
            "view": field("str", required=True, max_len=64),
            "query": field("str", max_len=4096),
            "results": field("int"),
            "format": field("str", max_len=16),
        },
    },
    {
        "name": "audit.verified",
        "sources": AUDIT,
        "summary": "The whole log was verified against its hashes and signatures.",
        "cannot_capture": "Entries removed from the tail after the last checkpoint kept "
        "outside the store.",
        "ocsf": 6003,
        "fields": {
            "size": field("int"),
            "result": field("str", max_len=64),
            "first_bad_index": field("int"),
        },
    },
    {
        "name": "audit.verify.started",
        "sources": AUDIT,
        "summary": "An officer started a whole-log verification in the audit service.",
        "cannot_capture": "Verifications run outside the service (enclave audit verify).",
        "ocsf": 6003,
        "fields": {"size": field("int"), "job": field("str", max_len=64)},
    },
    {
        "name": "audit.checkpoint.published",
        "sources": AUDIT,
        "summary": "A signed checkpoint was published or exported for witnessing.",
        "cannot_capture": "Whether any witness actually stored the checkpoint.",
        "ocsf": 6003,
        "fields": {"size": field("int"), "destination": field("str", max_len=1024)},
    },
    {
        "name": "audit.token.issued",
        "sources": CLI,
        "summary": "An intake token for a source was issued or rotated.",
        "cannot_capture": "Copies of the token made by whoever received it.",
        "ocsf": 6003,
        "fields": {
            "token_id": field("str", required=True, max_len=128),
            "for_source": field("str", max_len=64),
        },
    },
    {
        "name": "audit.token.revoked",
        "sources": CLI,
        "summary": "An intake token was revoked.",
        "cannot_capture": "Events sent with the token before revocation that were never delivered.",
        "ocsf": 6003,
        "fields": {
            "token_id": field("str", required=True, max_len=128),
            "reason": field("str", max_len=256),
        },
    },
    {
        "name": "audit.intake.rejected",
        "sources": AUDIT,
        "summary": "The audit service rejected a batch of events (bad token or bad input).",
        "cannot_capture": "The rejected events themselves (only the reason is kept).",
        "ocsf": 6003,
        "fields": {"reason": field("str", required=True, max_len=256), "count": field("int")},
    },
]
