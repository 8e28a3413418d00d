"""The condition of each control group, read from the spec and the live cluster.

Called by ``reconcile_enclave`` (``_reconcile.py``, steps 2 and 4 of its docstring):
``approval_condition`` (the approval window, pure), ``quarantine_condition`` (pure),
``network_isolation`` (live policies against the tier's), ``storage_condition`` (the
claims' binding) and ``workspace_condition`` (the hub's readiness). Reads only; a
cluster that cannot be read is a :class:`ClusterError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client

from ._apply import server_message
from ._live import analyse_live, expected_isolation
from ._objects import namespace_name
from ._settings import HubConfig, RenderSettings
from ._spec import Enclave
from .errors import ClusterError

__all__ = [
    "CONDITION_TYPES",
    "Condition",
    "approval_condition",
    "network_isolation",
    "quarantine_condition",
    "storage_condition",
    "workspace_condition",
]

#: One condition per control group, in the order status lists them.
CONDITION_TYPES = ("Approval", "Namespace", "NetworkIsolation", "Identity", "Storage", "Workspace")


@dataclass(frozen=True, kw_only=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def approval_condition(enclave: Enclave, now: datetime) -> Condition:
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


def network_isolation(
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


def storage_condition(api_client: Any, enclave: Enclave) -> Condition:
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


def workspace_condition(
    api_client: Any, ns: str, hub_config: HubConfig | None, state: str
) -> Condition:
    try:
        hub = client.AppsV1Api(api_client).read_namespaced_deployment("hub", ns)
    except client.ApiException as e:
        raise ClusterError(f"reading the hub of {ns}: {server_message(e)}") from e
    ready = (hub.status.ready_replicas if hub.status else None) or 0
    if state != "open":
        return Condition(
            type="Workspace",
            status="False",
            reason="Stopped",
            message=f"the enclave is {state}: hub and proxy scaled to zero, no Ingress, "
            "single-user pods deleted",
        )
    if ready >= 1:
        return Condition(type="Workspace", status="True", reason="HubReady", message="hub ready")
    why = "" if hub_config is not None else "; no hub configuration was given"
    return Condition(
        type="Workspace",
        status="False",
        reason="HubNotReady",
        message=f"the hub Deployment has {ready} of 1 ready replicas{why}",
    )


def quarantine_condition(enclave: Enclave) -> Condition:
    q = enclave.quarantine
    assert q is not None
    if q.active:
        return Condition(
            type="Quarantine",
            status="True",
            reason="Quarantined",
            message=f"quarantined by {q.by} at {q.at or '?'}: {q.reason}; all traffic denied, "
            "hub stopped",
        )
    return Condition(
        type="Quarantine",
        status="False",
        reason="Lifted",
        message=f"quarantine lifted by {q.by} at {q.at or '?'}: {q.reason}",
    )
