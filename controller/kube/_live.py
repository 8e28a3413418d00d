"""Reading an enclave's isolation from the live cluster, and what its tier expects.

``live_isolation`` reads the namespace and its NetworkPolicies through the API and
hands them to the pure ``analyse_policies``; ``expected_isolation`` runs the same
analysis on the policies ``render_enclave`` would write, so the two compare
directly (``IsolationReport.differences``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from policies import Tier

from ._apply import server_message
from ._isolation import IsolationReport, PodClass, analyse_policies
from ._objects import (
    HUB_PORT,
    PROXY_API_PORT,
    PROXY_PUBLIC_PORT,
    SINGLEUSER_PORT,
    Owner,
    make_network_policies,
    namespace_name,
    pod_labels,
)
from ._schema import GROUP, KIND, VERSION, Problem
from ._settings import RenderSettings
from ._spec import Enclave, load_enclave
from .errors import ClusterError, InvalidEnclaveError

__all__ = [
    "LiveIsolation",
    "analyse_live",
    "enclave_pod_classes",
    "expected_isolation",
    "live_isolation",
]

#: The label that marks the controller's own objects; a policy without it was added by
#: someone else.
MANAGED_BY = ("app.kubernetes.io/managed-by", "enclave-controller")


def enclave_pod_classes(enclave: Enclave) -> tuple[PodClass, ...]:
    """The pods an enclave runs, with the labels and named ports they carry, plus any other pod."""
    return (
        PodClass(name="hub", labels=pod_labels(enclave, "hub"), ports=(("hub", "TCP", HUB_PORT),)),
        PodClass(
            name="proxy",
            labels=pod_labels(enclave, "proxy"),
            ports=(("public", "TCP", PROXY_PUBLIC_PORT), ("api", "TCP", PROXY_API_PORT)),
        ),
        PodClass(
            name="singleuser",
            labels=pod_labels(enclave, "singleuser"),
            ports=(("notebook", "TCP", SINGLEUSER_PORT),),
        ),
        # a pod that carries none of the enclave's labels (someone else's)
        PodClass(name="other", labels={}),
    )


def expected_isolation(
    *, enclave: Enclave, tier: Tier, settings: RenderSettings
) -> IsolationReport:
    """What the rendered policies allow; for a quarantined enclave, the default deny alone."""
    ns = namespace_name(enclave)
    policies = make_network_policies(enclave, tier, settings, Owner(name=enclave.name))
    if enclave.quarantined:
        policies = [p for p in policies if p["metadata"]["name"] == "default-deny"]
    return analyse_policies(
        namespace=ns,
        namespace_labels={"kubernetes.io/metadata.name": ns},
        policies=policies,
        pod_classes=enclave_pod_classes(enclave),
    )


@dataclass(frozen=True, kw_only=True)
class LiveIsolation:
    enclave: Enclave
    report: IsolationReport
    #: Policies in the namespace that the controller did not write.
    foreign_policies: tuple[str, ...]


def no_such_enclave(name: str) -> InvalidEnclaveError:
    """The error for a NAME that names no Enclave in the cluster (exit 2)."""
    return InvalidEnclaveError(
        source=f"{KIND} {name}",
        problems=[Problem(field="metadata.name", message="no such Enclave in the cluster")],
    )


def live_isolation(*, api_client: Any, name: str) -> LiveIsolation:
    """Read Enclave ``name``, its namespace and the namespace's NetworkPolicies; analyse them.

    Raises :class:`InvalidEnclaveError` when no such Enclave exists or its spec is
    invalid, :class:`ClusterError` when the cluster cannot be read.
    """
    custom = client.CustomObjectsApi(api_client)
    try:
        document = custom.get_cluster_custom_object(GROUP, VERSION, "enclaves", name)
    except client.ApiException as e:
        if e.status == 404:
            raise no_such_enclave(name) from None
        raise ClusterError(f"reading {KIND} {name}: {server_message(e)}") from e
    enclave = load_enclave(document, source=f"{KIND} {name}")
    report, foreign = analyse_live(api_client=api_client, enclave=enclave)
    return LiveIsolation(enclave=enclave, report=report, foreign_policies=foreign)


def analyse_live(*, api_client: Any, enclave: Enclave) -> tuple[IsolationReport, tuple[str, ...]]:
    """The isolation of ``enclave``'s namespace from its live policies, and the policies
    in it the controller did not write."""
    ns = namespace_name(enclave)
    try:
        namespace = client.CoreV1Api(api_client).read_namespace(ns)
        listed = client.NetworkingV1Api(api_client).list_namespaced_network_policy(ns)
    except client.ApiException as e:
        raise ClusterError(f"reading namespace {ns}: {server_message(e)}") from e
    policies = api_client.sanitize_for_serialization(listed.items)
    foreign = tuple(
        sorted(
            p["metadata"]["name"]
            for p in policies
            if (p["metadata"].get("labels") or {}).get(MANAGED_BY[0]) != MANAGED_BY[1]
        )
    )
    report = analyse_policies(
        namespace=ns,
        namespace_labels=(namespace.metadata.labels if namespace.metadata else None) or {},
        policies=policies,
        pod_classes=enclave_pod_classes(enclave),
    )
    return report, foreign
