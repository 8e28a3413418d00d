"""One reconciliation of one Enclave: render, apply, observe, report. No event loop here.

``reconcile_enclave`` is called by the kopf handlers in ``operator.py`` (on create,
update, resume and on a timer, so drift and a lapsed approval are seen even if the
controller was down when they happened). Steps:

1. Validate the spec with the same schema as admission; an invalid spec is a
   permanent failure (phase ``Failed``), reported in status, never half-applied.
2. Approval: outside ``notBefore``..``notAfter`` nothing is applied (phase
   ``Pending`` before, ``Suspended`` after). Tearing down an enclave that was
   already provisioned is not built yet (docs/controller.md).
3. Render every object with the Enclave's uid as owner; server-side apply, in
   order (namespace and default deny first) and with the one field manager, those
   that are missing or differ from the live ones (a settled enclave costs no write).
   When the live policies differed from the tier's before this repair,
   ``NetworkIsolation`` stays False (``DriftRepaired``) until the next
   reconciliation confirms them.
4. Observe: isolation computed from the live policies against the tier's; the
   dataset claims' binding; the hub Deployment's readiness.
5. Write ``status`` (phase, observedGeneration, one condition per control group)
   through the status subresource, only when it changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from policies import Catalog, PolicyError

from ._apply import FIELD_MANAGER, server_message, sync_objects
from ._live import analyse_live, expected_isolation
from ._objects import namespace_name
from ._render import render_enclave
from ._schema import GROUP, KIND, PLURAL, VERSION
from ._settings import HubConfig, RenderSettings
from ._spec import Enclave, load_enclave
from .errors import ClusterError, InvalidEnclaveError

__all__ = ["CONDITION_TYPES", "Condition", "Outcome", "reconcile_enclave"]

#: One condition per control group, in the order status lists them.
CONDITION_TYPES = ("Approval", "Namespace", "NetworkIsolation", "Identity", "Storage", "Workspace")


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one reconciliation found; ``permanent`` when retrying cannot help."""

    phase: str
    conditions: tuple[Condition, ...]
    permanent: bool = False
    status_written: bool = False
    #: Objects that were missing or differed from ours and were applied.
    written: tuple[str, ...] = ()
    #: Of those, the ones that repaired drifted network isolation.
    repaired: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(UTC)


def reconcile_enclave(
    *,
    api_client: Any,
    document: Mapping[str, Any],
    catalog: Catalog,
    settings: RenderSettings,
    hub_config: HubConfig | None,
    now: datetime | None = None,
) -> Outcome:
    """Steps 1-5 of the module docstring for one Enclave resource as the API returned it.

    Raises :class:`ClusterError` when the cluster refuses or cannot be reached (a
    temporary error: the caller retries with backoff).
    """
    now = now or _now()
    name = str(document["metadata"]["name"])
    try:  # 1.
        enclave = load_enclave(dict(document), source=f"{KIND} {name}")
        tier = catalog.get(enclave.tier)
    except (InvalidEnclaveError, PolicyError) as e:
        bad = Condition(type="Approval", status="False", reason="InvalidSpec", message=str(e))
        outcome = Outcome(phase="Failed", conditions=(bad,), permanent=True)
        return _write_status(api_client, document, outcome, now)
    approval = _approval(enclave, now)  # 2.
    if approval.status != "True":
        phase = "Pending" if approval.reason == "NotYetValid" else "Suspended"
        return _write_status(
            api_client, document, Outcome(phase=phase, conditions=(approval,)), now
        )
    objects = render_enclave(  # 3.
        enclave=enclave,
        tier=tier,
        settings=settings,
        hub_config=hub_config,
        owner_uid=str(document["metadata"]["uid"]),
    )
    ns = namespace_name(enclave)
    before = (
        _network_isolation(api_client, enclave, tier, settings) if _exists(api_client, ns) else None
    )
    synced = sync_objects(api_client=api_client, objects=objects)
    isolation = _network_isolation(api_client, enclave, tier, settings)  # 4.
    repaired: tuple[str, ...] = ()
    if before is not None and before.status == "False" and synced.written:
        # The policies had drifted: say so until the next reconciliation confirms them.
        repaired = synced.written
        isolation = Condition(
            type="NetworkIsolation",
            status="False",
            reason="DriftRepaired",
            message=f"{before.message}; re-applied {', '.join(repaired)}",
        )
    conditions = (
        approval,
        Condition(type="Namespace", status="True", reason="Applied", message=f"{ns} applied"),
        isolation,
        Condition(
            type="Identity",
            status="True",
            reason="Applied",
            message="ServiceAccounts and the hub's Role applied; portal registration is not "
            "built yet",
        ),
        _storage(api_client, enclave),
        _workspace(api_client, ns, hub_config),
    )
    phase = "Ready" if all(c.status == "True" for c in conditions) else "Provisioning"
    outcome = Outcome(phase=phase, conditions=conditions, written=synced.written, repaired=repaired)
    return _write_status(api_client, document, outcome, now)


def _exists(api_client: Any, namespace: str) -> bool:
    try:
        client.CoreV1Api(api_client).read_namespace(namespace)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise ClusterError(f"reading namespace {namespace}: {server_message(e)}") from e
    return True


def _approval(enclave: Enclave, now: datetime) -> Condition:
    a = enclave.approval
    if now < a.not_before:
        return Condition(
            type="Approval",
            status="False",
            reason="NotYetValid",
            message=f"approval starts at {a.not_before.isoformat()}",
        )
    if now >= a.not_after:
        return Condition(
            type="Approval",
            status="False",
            reason="Expired",
            message=f"approval ended at {a.not_after.isoformat()}",
        )
    return Condition(
        type="Approval",
        status="True",
        reason="InForce",
        message=f"{a.ethics_review_id} / {a.data_use_agreement_id} until {a.not_after.isoformat()}",
    )


def _network_isolation(
    api_client: Any, enclave: Enclave, tier: Any, settings: RenderSettings
) -> Condition:
    live, foreign = analyse_live(api_client=api_client, enclave=enclave)
    differences = live.differences(
        expected_isolation(enclave=enclave, tier=tier, settings=settings)
    )
    if differences:
        shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
        extra = f" (policies not ours: {', '.join(foreign)})" if foreign else ""
        return Condition(
            type="NetworkIsolation",
            status="False",
            reason="DiffersFromTier",
            message=f"live policies differ from the tier{extra}: {shown}",
        )
    return Condition(
        type="NetworkIsolation",
        status="True",
        reason="MatchesTier",
        message="live policies allow exactly what the tier allows; enforcement by the "
        "cluster's network plugin is not confirmed",
    )


def _storage(api_client: Any, enclave: Enclave) -> Condition:
    ns = namespace_name(enclave)
    try:
        claims = client.CoreV1Api(api_client).list_namespaced_persistent_volume_claim(ns).items
    except client.ApiException as e:
        raise ClusterError(f"reading the claims of {ns}: {server_message(e)}") from e
    pending = sorted(
        str(c.metadata.name if c.metadata else "?")
        for c in claims
        if (c.status.phase if c.status else None) != "Bound"
    )
    if pending:
        return Condition(
            type="Storage",
            status="False",
            reason="ClaimsNotBound",
            message=f"not bound yet: {', '.join(pending)}",
        )
    return Condition(type="Storage", status="True", reason="Bound", message="every claim is bound")


def _workspace(api_client: Any, ns: str, hub_config: HubConfig | None) -> Condition:
    try:
        hub = client.AppsV1Api(api_client).read_namespaced_deployment("hub", ns)
    except client.ApiException as e:
        raise ClusterError(f"reading the hub of {ns}: {server_message(e)}") from e
    ready = (hub.status.ready_replicas if hub.status else None) or 0
    if ready >= 1:
        return Condition(type="Workspace", status="True", reason="HubReady", message="hub ready")
    why = "" if hub_config is not None else "; no hub configuration was given"
    return Condition(
        type="Workspace",
        status="False",
        reason="HubNotReady",
        message=f"the hub Deployment has {ready} of 1 ready replicas{why}",
    )


def _write_status(
    api_client: Any, document: Mapping[str, Any], outcome: Outcome, now: datetime
) -> Outcome:
    """Write ``status`` when it differs from what is there; keep unchanged conditions' times."""
    current = document.get("status") or {}
    previous = {c.get("type"): c for c in current.get("conditions") or []}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = []
    for c in outcome.conditions:
        old = previous.get(c.type) or {}
        same = old.get("status") == c.status
        conditions.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message[:32768],
                "observedGeneration": document["metadata"].get("generation", 0),
                "lastTransitionTime": old.get("lastTransitionTime", stamp) if same else stamp,
            }
        )
    status: dict[str, Any] = {
        "phase": outcome.phase,
        "observedGeneration": document["metadata"].get("generation", 0),
        "conditions": conditions,
    }
    if (
        current.get("phase") == status["phase"]
        and current.get("observedGeneration") == status["observedGeneration"]
        and _comparable(current.get("conditions")) == _comparable(conditions)
    ):
        return outcome
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": document["metadata"]["name"]},
        "status": status,
    }
    try:
        client.CustomObjectsApi(api_client).patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            PLURAL,
            document["metadata"]["name"],
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )
    except client.ApiException as e:
        raise ClusterError(
            f"writing the status of {KIND} {body['metadata']['name']}: {server_message(e)}"
        ) from e
    return dataclasses.replace(outcome, status_written=True)


def _comparable(conditions: Any) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in conditions or []
    ]
