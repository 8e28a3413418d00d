"""One reconciliation of one Enclave: render, apply, observe, report. No event loop here.

``reconcile_enclave`` is called by the kopf handlers in ``operator.py`` (on create,
update, resume and on a timer, so drift and a lapsed approval are seen even if the
controller was down when they happened). Steps:

1. Validate the spec with the same schema as admission; an invalid spec is a
   permanent failure (phase ``Failed``), reported in status, never half-applied.
2. Approval and lifecycle: before ``notBefore`` nothing is applied (``Pending``).
   From ``notAfter`` the enclave is closed (``Suspended``: hub and proxy scaled to
   zero, no Ingress, single-user pods deleted, the members' portal sessions ended
   once per closing when a portal is configured); ``spec.quarantine.active`` closes
   it further (``Quarantined``: only the default-deny policy). From ``notAfter`` plus
   the grace period, ``end_of_use`` (volumes destroyed, removed from the portal,
   record confirmed by the audit service, namespace deleted; phase ``Expired``). A
   closed enclave that was never provisioned is not created.
3. Render every object with the Enclave's uid as owner; server-side apply, in
   order (namespace and default deny first) and with the one field manager, those
   that are missing or differ from the live ones (a settled enclave costs no write;
   in a namespace that did not exist, all of them, without reading them first).
   Objects it no longer renders (carrying its labels) are deleted.
   When the sync had to rewrite a NetworkPolicy of an open enclave whose spec did
   not change (someone edited or deleted it), ``NetworkIsolation`` stays False
   (``DriftRepaired``) until the next reconciliation confirms the policies. Then
   the portal's registration is brought in step
   (``_identity.sync_registration``: written only when it differs); ``Identity``
   says ``Registered``, ``PortalNotConfigured`` or ``PortalUnavailable`` (retried).
4. Observe: isolation computed from the live policies against the tier's; the
   dataset claims' binding; the hub Deployment's readiness.
5. Write ``status`` (phase, observedGeneration, one condition per control group)
   through the status subresource, only when it changed.

Each condition is computed in ``_conditions.py``; ``Outcome`` and ``write_status`` are
in ``_status.py`` (re-exported here); the end of use is ``end_of_use`` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from audit.events import Event
from controller.portal_admin import PortalAdmin
from policies import Catalog, PolicyError

from ._apply import SyncResult, prune_objects, server_message, sync_objects
from ._conditions import (
    CONDITION_TYPES,
    Condition,
    approval_condition,
    network_isolation,
    quarantine_condition,
    storage_condition,
    workspace_condition,
)
from ._identity import end_member_sessions, remove_registration, sync_registration
from ._lifecycle import (
    AuditRecorder,
    AuditUnavailableError,
    PortalUnavailableError,
    destroy_volumes,
    lifecycle_event,
    stop_user_pods,
)
from ._objects import namespace_name
from ._render import render_enclave
from ._schema import KIND
from ._settings import HubConfig, RenderSettings
from ._spec import Enclave, load_enclave
from ._status import Outcome, write_status
from .errors import ClusterError, InvalidEnclaveError

__all__ = [
    "CONDITION_TYPES",
    "CONTROLLER_ACTOR",
    "Condition",
    "Ended",
    "Lifecycle",
    "Outcome",
    "end_of_use",
    "reconcile_enclave",
    "write_status",
]

#: The actor of the controller's own steps in audit events.
CONTROLLER_ACTOR = "system:enclave-controller"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class Lifecycle:
    """What the lifecycle steps need besides the cluster.

    ``audit`` None: nothing is recorded, and the end of use waits (it must be
    recorded before the data goes). ``portal`` None: the enclave is not registered
    with the portal and sessions are not ended; ``Identity`` and ``Sessions`` say so.
    ``expiry_grace``: how long after ``notAfter`` a suspended enclave's volumes are
    destroyed (the tier catalog has no value for it).
    """

    audit: AuditRecorder | None = None
    portal: PortalAdmin | None = None
    expiry_grace: timedelta = timedelta(days=30)


def reconcile_enclave(
    *,
    api_client: Any,
    document: Mapping[str, Any],
    catalog: Catalog,
    settings: RenderSettings,
    hub_config: HubConfig | None,
    now: datetime | None = None,
    lifecycle: Lifecycle | None = None,
) -> Outcome:
    """Steps 1-5 of the module docstring for one Enclave resource as the API returned it.

    Raises :class:`ClusterError` when the cluster refuses or cannot be reached (a
    temporary error: the caller retries with backoff).
    """
    now = now or _now()
    lifecycle = lifecycle or Lifecycle()
    name = str(document["metadata"]["name"])
    try:  # 1.
        enclave = load_enclave(dict(document), source=f"{KIND} {name}")
        tier = catalog.get(enclave.tier)
    except (InvalidEnclaveError, PolicyError) as e:
        bad = Condition(type="Approval", status="False", reason="InvalidSpec", message=str(e))
        outcome = Outcome(phase="Failed", conditions=(bad,), permanent=True)
        return write_status(api_client, document, outcome, now)
    approval = approval_condition(enclave, now)  # 2.
    previous_phase = (document.get("status") or {}).get("phase")
    if approval.reason == "NotYetValid":
        return write_status(
            api_client, document, Outcome(phase="Pending", conditions=(approval,)), now
        )
    if approval.reason == "Expired" and now >= enclave.approval.not_after + lifecycle.expiry_grace:
        return _expired(api_client, document, enclave, approval, lifecycle, now)
    state = (
        "quarantined"
        if enclave.quarantined
        else "suspended"
        if approval.reason == "Expired"
        else "open"
    )
    ns = namespace_name(enclave)
    exists = _exists(api_client, ns)
    if state != "open" and not exists:
        # Never provisioned: a closed enclave is not created just to be closed.
        phase = "Quarantined" if state == "quarantined" else "Suspended"
        closed = (approval, quarantine_condition(enclave)) if enclave.quarantined else (approval,)
        return write_status(api_client, document, Outcome(phase=phase, conditions=closed), now)
    objects = render_enclave(  # 3.
        enclave=enclave,
        tier=tier,
        settings=settings,
        hub_config=hub_config,
        owner_uid=str(document["metadata"]["uid"]),
        state=state,
    )
    before = network_isolation(api_client, enclave, tier, settings) if exists else None
    # A namespace that did not exist holds nothing: apply without reading, prune nothing.
    synced = sync_objects(api_client=api_client, objects=objects, absent=not exists)
    pruned = (
        prune_objects(api_client=api_client, namespace=ns, enclave=enclave.name, keep=objects)
        if exists
        else ()
    )
    if state != "open":
        stop_user_pods(api_client=api_client, namespace=ns, enclave=enclave.name)
    identity = _identity(api_client, document, enclave, settings, lifecycle)
    isolation = network_isolation(api_client, enclave, tier, settings)  # 4.
    repaired = _drift_repaired(document, previous_phase, state, synced.written)
    if repaired:
        # The policies had drifted: say so until the next reconciliation confirms them.
        # Decided by what the sync had to write, not by ``before``: a change made
        # between that read and the sync is repaired by the sync and must be said too.
        seen = f"{before.message}; " if before is not None and before.status == "False" else ""
        isolation = Condition(
            type="NetworkIsolation",
            status="False",
            reason="DriftRepaired",
            message=f"{seen}re-applied {', '.join(repaired)}",
        )
    conditions = [
        approval,
        Condition(type="Namespace", status="True", reason="Applied", message=f"{ns} applied"),
        isolation,
        identity,
        storage_condition(api_client, enclave),
        workspace_condition(api_client, ns, hub_config, state),
    ]
    if state == "open":
        phase = "Ready" if all(c.status == "True" for c in conditions) else "Provisioning"
    else:
        phase = "Quarantined" if state == "quarantined" else "Suspended"
    if enclave.quarantine is not None:
        conditions.append(quarantine_condition(enclave))
    revoked: int | None = None
    if state != "open":
        sessions, revoked = _sessions(
            document, enclave, lifecycle, fresh=previous_phase != phase, state=state
        )
        conditions.append(sessions)
    events = _lifecycle_events(document, enclave, previous_phase, phase, synced, repaired, revoked)
    # The portal did not answer (registration or sessions): retried soon, not only at
    # the next resync.
    unavailable = [c for c in conditions if c.reason == "PortalUnavailable"]
    if lifecycle.audit is not None:
        for event in events:
            lifecycle.audit.emit(event)
    outcome = Outcome(
        phase=phase,
        conditions=tuple(conditions),
        written=synced.written + pruned,
        repaired=repaired,
        waiting=bool(unavailable),
        waiting_for=unavailable[0].message if unavailable else "",
    )
    return write_status(api_client, document, outcome, now)


def _expired(
    api_client: Any,
    document: Mapping[str, Any],
    enclave: Enclave,
    approval: Condition,
    lifecycle: Lifecycle,
    now: datetime,
) -> Outcome:
    """Past ``notAfter`` and the grace period: the end of use, once (``Expired`` after)."""
    if (document.get("status") or {}).get("phase") == "Expired":
        return Outcome(phase="Expired", conditions=(approval,))
    ended = end_of_use(
        api_client=api_client,
        document=document,
        enclave=enclave,
        lifecycle=lifecycle,
        reason=f"approval ended at {enclave.approval.not_after.isoformat()} and the "
        f"grace period of {lifecycle.expiry_grace} passed",
    )
    phase = "Terminating" if ended.waiting else "Expired"
    outcome = Outcome(phase=phase, conditions=(approval, ended.condition), waiting=ended.waiting)
    return write_status(api_client, document, outcome, now)


def _drift_repaired(
    document: Mapping[str, Any], previous_phase: Any, state: str, written: tuple[str, ...]
) -> tuple[str, ...]:
    """The NetworkPolicies the sync had to rewrite although nothing asked for a change.

    An open enclave whose status already describes its current spec (same generation,
    an open phase) renders the same policies as last time, so a policy the sync had to
    write was changed or deleted by someone else.
    """
    status = document.get("status") or {}
    settled = (
        state == "open"
        and previous_phase in ("Ready", "Provisioning")
        and status.get("observedGeneration") == document["metadata"].get("generation")
    )
    if not settled:
        return ()
    return tuple(w for w in written if w.startswith("NetworkPolicy "))


def _identity(
    api_client: Any,
    document: Mapping[str, Any],
    enclave: Enclave,
    settings: RenderSettings,
    lifecycle: Lifecycle,
) -> Condition:
    """The portal's registration brought in step with the spec, and what came of it."""

    def said(status: str, reason: str, message: str) -> Condition:
        applied = "ServiceAccounts and the hub's Role applied"
        return Condition(
            type="Identity", status=status, reason=reason, message=f"{applied}; {message}"
        )

    if lifecycle.portal is None:
        return said(
            "False",
            "PortalNotConfigured",
            "no portal URL and admin token are configured, so the enclave is not registered "
            "with the portal and nobody can sign in to its hub",
        )
    try:
        registered = sync_registration(
            api_client=api_client,
            portal=lifecycle.portal,
            enclave=enclave,
            settings=settings,
            owner_uid=str(document["metadata"]["uid"]),
        )
    except PortalUnavailableError as e:
        return said("False", "PortalUnavailable", f"{e}; retrying")
    return said("True", "Registered", registered.message)


def _sessions(
    document: Mapping[str, Any], enclave: Enclave, lifecycle: Lifecycle, *, fresh: bool, state: str
) -> tuple[Condition, int | None]:
    """End the members' portal sessions once per closing; the count when they were ended
    now (None: already done, or not possible)."""
    old = {c.get("type"): c for c in (document.get("status") or {}).get("conditions") or []}
    done = old.get("Sessions") or {}
    if not fresh and done.get("status") == "True":
        kept = Condition(
            type="Sessions",
            status="True",
            reason=str(done.get("reason")),
            message=str(done.get("message")),
        )
        return kept, None
    if lifecycle.portal is None:
        missing = Condition(
            type="Sessions",
            status="False",
            reason="PortalNotConfigured",
            message="no portal URL and admin token are configured: the members' portal "
            "sessions were not revoked",
        )
        return missing, None
    try:
        ended = end_member_sessions(
            portal=lifecycle.portal, enclave=enclave, reason=f"enclave {enclave.name} {state}"
        )
    except PortalUnavailableError as e:
        failed = Condition(
            type="Sessions", status="False", reason="PortalUnavailable", message=f"{e}; retrying"
        )
        return failed, None
    revoked = Condition(
        type="Sessions",
        status="True",
        reason="Revoked",
        message=f"{ended} portal session(s) of the members revoked",
    )
    return revoked, ended


def _lifecycle_events(
    document: Mapping[str, Any],
    enclave: Enclave,
    previous_phase: str | None,
    phase: str,
    synced: SyncResult,
    repaired: tuple[str, ...],
    revoked: int | None,
) -> list[Event | None]:
    """The audit events of this reconciliation (``None``: action not registered yet)."""
    uid = str(document["metadata"].get("uid", enclave.name))
    generation = int(document["metadata"].get("generation", 0))
    q = enclave.quarantine
    events: list[Event | None] = []

    def add(action: str, key: str, actor: str, details: Mapping[str, Any]) -> None:
        events.append(
            lifecycle_event(
                action=action,
                enclave=enclave.name,
                actor=actor,
                details=details,
                event_id=f"ctl-{uid}-{key}"[:128],
            )
        )

    if repaired:
        add(
            "enclave.drift_repaired",
            f"drift-{_now():%Y%m%dT%H%M%S%f}",
            CONTROLLER_ACTOR,
            {"objects": len(repaired)},
        )
    elif synced.written and phase not in ("Suspended", "Quarantined"):
        add(
            "enclave.provisioned",
            f"gen-{generation}-{len(synced.written)}",
            CONTROLLER_ACTOR,
            {"tier": enclave.tier, "generation": generation, "objects": len(synced.written)},
        )
    ended = {} if revoked is None else {"sessions_revoked": revoked}
    if phase != previous_phase:
        if phase == "Quarantined" and q is not None:
            add("enclave.quarantined", f"q-{q.at}", q.by, {"reason": q.reason, **ended})
        elif phase == "Suspended":
            add(
                "enclave.suspended",
                "suspended",
                CONTROLLER_ACTOR,
                {"reason": "approval ended", **ended},
            )
        elif previous_phase == "Quarantined" and q is not None and not q.active:
            add("enclave.quarantine_lifted", f"lift-{q.at}", q.by, {"reason": q.reason})
    return events


@dataclass(frozen=True, kw_only=True)
class Ended:
    waiting: bool
    condition: Condition


def end_of_use(
    *,
    api_client: Any,
    document: Mapping[str, Any],
    enclave: Enclave,
    lifecycle: Lifecycle,
    reason: str,
) -> Ended:
    """Stop the workloads, destroy the volumes, record the end of use, remove the namespace.

    Level-triggered and in that order (the portal's registration is removed after the
    volumes, when a portal is configured); each call goes as far as it can and says
    what it waits for. The record is confirmed by the audit service before the namespace
    (and with it anything left) is deleted; without an audit service it waits.
    """
    ns = namespace_name(enclave)

    def waiting(reason_: str, message: str) -> Ended:
        return Ended(
            waiting=True,
            condition=Condition(type="EndOfUse", status="False", reason=reason_, message=message),
        )

    if _exists(api_client, ns):
        apps = client.AppsV1Api(api_client)
        for deployment in ("hub", "proxy"):
            try:
                apps.delete_namespaced_deployment(deployment, ns)
            except client.ApiException as e:
                if e.status != 404:
                    raise ClusterError(f"stopping {ns}/{deployment}: {server_message(e)}") from e
        stop_user_pods(api_client=api_client, namespace=ns, enclave=enclave.name)
        remaining = destroy_volumes(api_client=api_client, namespace=ns)
        if remaining:
            return waiting("DestroyingVolumes", f"{remaining} claim(s) in {ns} not gone yet")
    if lifecycle.portal is not None:
        try:
            remove_registration(portal=lifecycle.portal, enclave=enclave)
        except PortalUnavailableError as e:
            return waiting("PortalUnavailable", f"the enclave is still registered: {e}")
    if lifecycle.audit is None:
        return waiting(
            "AuditNotConfigured",
            "no audit service is configured: the end-of-use record cannot be written, so the "
            "namespace is kept",
        )
    uid = str(document["metadata"].get("uid", enclave.name))
    record = lifecycle_event(
        action="enclave.end_of_use",
        enclave=enclave.name,
        actor=CONTROLLER_ACTOR,
        details={
            "reason": reason[:256],
            "tier": enclave.tier,
            "volumes_destroyed": True,
            "not_after": enclave.approval.not_after.isoformat(),
        },
        event_id=f"ctl-{uid}-end-of-use",
    )
    try:
        lifecycle.audit.confirm(record)
    except AuditUnavailableError as e:
        return waiting("AuditUnavailable", f"the end-of-use record is not in the log yet: {e}")
    try:
        client.CoreV1Api(api_client).delete_namespace(ns)
    except client.ApiException as e:
        if e.status != 404:
            raise ClusterError(f"deleting namespace {ns}: {server_message(e)}") from e
        return Ended(
            waiting=False,
            condition=Condition(
                type="EndOfUse",
                status="True",
                reason="Recorded",
                message="volumes destroyed, end-of-use recorded in the audit log, namespace gone",
            ),
        )
    return waiting("NamespaceTerminating", f"waiting for namespace {ns} to go")


def _exists(api_client: Any, namespace: str) -> bool:
    try:
        client.CoreV1Api(api_client).read_namespace(namespace)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise ClusterError(f"reading namespace {namespace}: {server_message(e)}") from e
    return True
