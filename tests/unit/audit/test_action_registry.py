"""The action registry holds the same actions, from the same sources, in the same order
and with the same specs as the snapshot taken before ``audit/_actions.py`` was split by
area (issue #14). A deliberate change to the registry updates this snapshot in the same
commit, so a reviewer sees exactly which action or source it adds or drops."""

from __future__ import annotations

import hashlib

from audit._actions import ACTIONS, ActionSpec

#: every registered action, in registry order, with the sources allowed to send it
SNAPSHOT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("auth.login.started", ("portal",)),
    ("auth.factor.verified", ("audit", "portal")),
    ("auth.factor.failed", ("audit", "portal")),
    ("auth.lockout", ("audit", "portal")),
    ("auth.factor.enrolled", ("portal",)),
    ("auth.factor.revoked", ("portal",)),
    ("auth.logout", ("audit", "portal")),
    ("session.started", ("hub", "portal")),
    ("session.ended", ("hub", "portal")),
    ("session.denied", ("hub", "portal")),
    ("workspace.file.get", ("workspace",)),
    ("workspace.file.put", ("workspace",)),
    ("workspace.file.delete", ("workspace",)),
    ("workspace.kernel.started", ("workspace",)),
    ("workspace.kernel.stopped", ("workspace",)),
    ("workspace.egress.blocked", ("controller",)),
    ("export.requested", ("workspace",)),
    ("export.scanned", ("controller",)),
    ("export.approved", ("portal",)),
    ("export.rejected", ("portal",)),
    ("export.downloaded", ("portal",)),
    ("enclave.provisioned", ("controller",)),
    ("enclave.deprovisioned", ("controller",)),
    ("enclave.refused", ("controller",)),
    ("enclave.drift_repaired", ("controller",)),
    ("enclave.suspended", ("controller",)),
    ("enclave.quarantined", ("controller",)),
    ("enclave.quarantine_lifted", ("controller",)),
    ("enclave.end_of_use", ("controller",)),
    ("enclave.member.added", ("controller",)),
    ("enclave.member.removed", ("controller",)),
    ("audit.read", ("audit",)),
    ("audit.verified", ("audit",)),
    ("audit.verify.started", ("audit",)),
    ("audit.checkpoint.published", ("audit",)),
    ("audit.token.issued", ("cli",)),
    ("audit.token.revoked", ("cli",)),
    ("audit.intake.rejected", ("audit",)),
    ("auth.invitation.accepted", ("portal",)),
    ("auth.invitation.rejected", ("portal",)),
    ("auth.enrolment.password", ("portal",)),
    ("auth.enrolment.totp", ("portal",)),
    ("auth.enrolment.webauthn", ("portal",)),
    ("auth.factor.refused", ("portal",)),
    ("auth.authenticator.disabled", ("portal",)),
    ("auth.webauthn.rejected", ("portal",)),
    ("session.stepped_up", ("portal",)),
    ("enclave.entry.allowed", ("portal",)),
    ("enclave.entry.refused", ("portal",)),
    ("enclave.stepup.required", ("portal",)),
    ("oidc.authorize.refused", ("portal",)),
    ("oidc.authorize.stepup", ("portal",)),
    ("oidc.code.issued", ("portal",)),
    ("oidc.token.issued", ("portal",)),
    ("oidc.token.refused", ("portal",)),
    ("oidc.client.auth_failed", ("portal",)),
    ("web.csrf.rejected", ("portal",)),
    ("web.request.rejected", ("portal",)),
    ("admin.user.invited", ("portal",)),
    ("admin.user.disabled", ("portal",)),
    ("admin.user.rebound", ("portal",)),
    ("admin.credential.approved", ("portal",)),
    ("admin.enclave.registered", ("portal",)),
    ("admin.enclave.removed", ("portal",)),
    ("admin.client.registered", ("portal",)),
    ("admin.signing_key.rotated", ("portal",)),
    ("admin.keys.resealed", ("portal",)),
    ("admin.store.migrated", ("portal",)),
    ("admin.auth.failed", ("portal",)),
    ("hub.login.allowed", ("hub",)),
    ("hub.login.refused", ("hub",)),
    ("hub.server.started", ("hub",)),
    ("hub.server.stopped", ("hub",)),
    ("hub.spawn.failed", ("hub",)),
    ("workspace.file.created", ("workspace",)),
    ("workspace.file.renamed", ("workspace",)),
    ("workspace.file.copied", ("workspace",)),
    ("workspace.file.uploaded", ("workspace",)),
    ("workspace.download.refused", ("workspace",)),
    ("workspace.terminal.refused", ("workspace",)),
    ("workspace.code.executed", ("workspace",)),
    ("workspace.screen_output", ("workspace",)),
    ("workspace.screen_output.warned", ("workspace",)),
    ("workspace.screen_output.exceeded", ("workspace",)),
)

#: sha256 of every spec in order, each as ``_canonical`` writes it
SPECS_SHA256 = "d439420871ad626b128de898794ce6733250b41428907f41a45e6733882d00df"


def test_the_registry_names_the_snapshot_actions_and_sources() -> None:
    assert tuple((n, tuple(sorted(s.sources))) for n, s in ACTIONS.items()) == SNAPSHOT


def _canonical(spec: ActionSpec) -> str:
    """Every part of a spec, its sources sorted (a frozenset's repr follows the hash seed)."""
    parts = (spec.name, spec.version, spec.summary, spec.cannot_capture)
    return repr((*parts, tuple(spec.fields.items()), sorted(spec.sources), spec.ocsf_class))


def test_the_registry_specs_match_the_snapshot_digest() -> None:
    text = "\n".join(_canonical(spec) for spec in ACTIONS.values())
    assert hashlib.sha256(text.encode()).hexdigest() == SPECS_SHA256
