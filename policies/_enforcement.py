"""Which component enforces each setting today, in one table.

A setting not listed here is "not yet enforced": its component (the workspaces,
the controller, the airlock) is not built yet. Every claim names the code that
makes it true (``evidence``: a file of this repository and a text it contains);
``tests/unit/policies/test_enforcement.py`` checks each one, so nothing claims
more than the code does. Update this table in the change that adds the code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ENFORCEMENT", "NOT_YET_ENFORCED", "Enforcement", "enforced_by"]

NOT_YET_ENFORCED = "not yet enforced"


@dataclass(frozen=True)
class Enforcement:
    """Who enforces a setting today, and where in the code."""

    by: str
    evidence: tuple[tuple[str, str], ...]


_DECIDE = ("auth/_app.py", "evaluate_login(tier=tier")


def _login(name: str) -> Enforcement:
    return Enforcement(
        "portal (auth): sign-in and enclave entry",
        (("policies/_decisions.py", f"login.{name}"), _DECIDE),
    )


def _throttle(name: str) -> Enforcement:
    return Enforcement("portal (auth): every factor", (("auth/_factors.py", f"throttle.{name}"),))


_AUDIT_STORE = Enforcement(
    "audit store: append-only, refuses UPDATE and DELETE; nothing prunes it (keeping the "
    "database is the operator's duty)",
    (
        ("audit/_migrations/sqlite/0001_initial.sql", "DELETE refused on audit_entries"),
        ("audit/_migrations/postgres/0001_initial.sql", "TRUNCATE"),
    ),
)
_REGISTER = Enforcement(
    "portal (auth): users, roles and enclave members; each change in the audit log",
    (
        ("auth/_portal.py", '"admin.enclave.registered"'),
        ("auth/_portal.py", '"admin.user.invited"'),
    ),
)

_DOWNLOADS = "controller/workspace/_downloads.py"
_SCREEN = "controller/workspace/_screenguard.py"
_HUBCONFIG = "controller/workspace/_hubconfig.py"

#: ``group.setting`` -> who enforces it today.
ENFORCEMENT: Mapping[str, Enforcement] = {
    **{
        f"login.{n}": _login(n)
        for n in (
            "min_factors",
            "min_categories",
            "require_phishing_resistant",
            "require_biometric",
            "require_device_bound",
            "webauthn_user_verification",
            "aal",
        )
    },
    "login.password_min_length": Enforcement(
        "portal (auth): password enrolment",
        (("auth/_factors.py", "tier.login.password_min_length"),),
    ),
    "login.enrolment_approval": Enforcement(
        "portal (auth): a factor counts once an officer approved it, one credential at a time",
        (
            ("policies/_decisions.py", "login.enrolment_approval and"),
            ("auth/_factors.py", "approved=cred.approved"),
            _DECIDE,
        ),
    ),
    "session.idle_timeout_s": Enforcement(
        "portal (auth): the portal sign-in session, at the portal's login tier; each "
        "enclave hub's idle culler stops servers idle this long",
        (
            ("auth/_app.py", "rules.idle_timeout_s"),
            (_HUBCONFIG, "timeout_s=tier.session.idle_timeout_s"),
            ("controller/workspace/_hubapp.py", 'inactive_limit=int(settings["timeout"])'),
        ),
    ),
    "session.max_session_s": Enforcement(
        "portal (auth): enclave entry refused past it; each enclave hub: its cookie and "
        "the idle culler's maximum server age",
        (
            ("auth/_app.py", "tier.session.max_session_s"),
            (_HUBCONFIG, "max_age_s=tier.session.max_session_s"),
            ("controller/workspace/_hubapp.py", 'max_age=int(settings["max_age"])'),
        ),
    ),
    **{
        f"throttle.{n}": _throttle(n)
        for n in ("max_consecutive_failures", "backoff_after_failures", "backoff_initial_s")
    },
    "network.source_allowlist_required": Enforcement(
        "portal (auth): enclave registration and entry",
        (
            ("auth/_portal.py", "t.network.source_allowlist_required"),
            ("policies/_decisions.py", "tier.network.source_allowlist_required"),
        ),
    ),
    "browser_download.cache_no_store": Enforcement(
        "portal and audit UI pages; workspace server extension: every workspace response",
        (
            ("audit/http_headers.py", '_NO_STORE = (b"cache-control", b"no-store")'),
            ("auth/_web/__init__.py", "SecurityHeaders, csp=PORTAL_CSP"),
            ("audit/service/_app.py", "app.add_middleware(SecurityHeaders, csp=CSP"),
            (_DOWNLOADS, 'headers["Cache-Control"] = "no-store"'),
        ),
    ),
    "browser_download.allowed": Enforcement(
        "workspace server extension: /files, nbconvert and attachment responses refused "
        "(403, recorded) on every tier; a tier that allowed downloads would still be refused",
        ((_DOWNLOADS, '"workspace.download.refused"'),),
    ),
    "terminals.enabled": Enforcement(
        "enclave hub configuration: the single-user server starts with terminals as the tier says",
        ((_HUBCONFIG, "--ServerApp.terminals_enabled={tier.terminals.enabled}"),),
    ),
    "audited_operations.file_events": Enforcement(
        "workspace server extension: contents API reads, saves, creations, renames, "
        "copies, uploads and deletions",
        ((_DOWNLOADS, '"workspace.file.get"'), (_DOWNLOADS, '"workspace.file.renamed"')),
    ),
    "datasets.read_only": Enforcement(
        "controller: read-only dataset mounts (Kubernetes claims and the local sandbox's binds)",
        (
            ("controller/kube/_workloads.py", '"mountPath": ds.mount_path, "readOnly": True'),
            ("controller/local/sandbox.py", '"--bind" if bind.writable else "--ro-bind"'),
        ),
    ),
    "egress.dns": Enforcement(
        "controller (Kubernetes): the single-user NetworkPolicy allows DNS only if the tier does",
        (("controller/kube/_objects.py", "*([dns] if tier.egress.dns else [])"),),
    ),
    "egress.audit_intake": Enforcement(
        "controller (Kubernetes): the single-user NetworkPolicy allows the audit intake "
        "only if the tier does",
        (("controller/kube/_objects.py", "if tier.egress.audit_intake else []"),),
    ),
    "pod_security.level": Enforcement(
        "controller (Kubernetes): the enclave namespace's Pod Security labels",
        (("controller/kube/_objects.py", "level = str(tier.pod_security.level)"),),
    ),
    "pod_security.read_only_root_fs": Enforcement(
        "controller (Kubernetes): every container of the hub, the proxy and the workspaces "
        "(read-only root whatever the tier)",
        (("controller/kube/_workloads.py", '"readOnlyRootFilesystem": True'),),
    ),
    "pod_security.service_account_token": Enforcement(
        "controller (Kubernetes): the hub's KubeSpawner gives workspace pods no "
        "service-account token (whatever the tier)",
        (("controller/kube/_workloads.py", '"automount_service_account_token": False'),),
    ),
    "compute.dedicated_nodes": Enforcement(
        "controller (Kubernetes): workspace pods scheduled onto the enclave's dedicated nodes",
        (("controller/kube/_workloads.py", "if not tier.compute.dedicated_nodes:"),),
    ),
    "end_of_use.destroy_volumes": Enforcement(
        "controller (Kubernetes): the end of use destroys the volumes before the namespace goes",
        (("controller/kube/_reconcile.py", "remaining = destroy_volumes("),),
    ),
    "incident.one_command_quarantine": Enforcement(
        "controller (Kubernetes): enclave quarantine NAME denies all traffic and stops the hub",
        (("controller/kube/cli.py", "def quarantine("),),
    ),
    "screen_output.budget_bytes": Enforcement(
        "workspace server extension: bytes sent to the browser (kernel and terminal "
        "websockets, contents API) counted where they are written; output past the budget "
        "is not sent",
        (
            (_SCREEN, "budget_bytes=control.budget_bytes"),
            ("controller/workspace/_screen.py", "self.total + size > limit"),
        ),
    ),
    "screen_output.warn_bytes": Enforcement(
        "workspace server extension: the researcher is told, the officer sees an event",
        ((_SCREEN, "warn_bytes=control.warn_bytes"), (_SCREEN, '"workspace.screen_output.warned"')),
    ),
    "screen_output.past_budget": Enforcement(
        "workspace server extension: output refused, or the server stopped",
        (
            (_SCREEN, "self.past_budget = control.past_budget"),
            (_SCREEN, "ScreenOutputAction.STOP_SESSION"),
        ),
    ),
    "audited_operations.logins": Enforcement(
        "portal (auth): every factor, passed and failed",
        (
            ("auth/_factors.py", '"auth.factor.failed"'),
            ("auth/_factors.py", '"auth.factor.verified"'),
        ),
    ),
    "audited_operations.sessions": Enforcement(
        "portal (auth): portal sessions; each enclave hub: entries allowed and refused, "
        "servers started and stopped",
        (
            ("auth/_app.py", '"session.started"'),
            ("auth/_app.py", '"session.ended"'),
            ("controller/workspace/hub.py", 'action="hub.login.allowed"'),
            ("controller/workspace/hub.py", 'self._record("hub.server.stopped"'),
        ),
    ),
    "audited_operations.admin_actions": Enforcement(
        "portal (auth): its admin actions; controller: provisioning, suspension, "
        "quarantine and its lifting, end of use",
        (
            ("auth/_portal.py", '"admin.user.invited"'),
            ("controller/kube/_lifecycle.py", '"enclave.quarantine_lifted"'),
        ),
    ),
    "register.users": _REGISTER,
    "register.change_history": _REGISTER,
    "audit_retention.min_years": _AUDIT_STORE,
    "audit_retention.min_years_after_final_publication": _AUDIT_STORE,
    "audit_retention.pruned_on_deletion": _AUDIT_STORE,
}


def enforced_by(group: str, setting: str) -> str:
    """Who enforces ``group.setting`` today, as an officer reads it."""
    entry = ENFORCEMENT.get(f"{group}.{setting}")
    return entry.by if entry is not None else NOT_YET_ENFORCED
