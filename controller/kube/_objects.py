"""Small pure ``make_*`` functions: one Kubernetes object each, as a plain dict.

This module holds the names, labels and metadata every object shares, and the
namespace, identity, network, quota, storage, Service and Ingress objects; the pods
and what configures them (the hub and proxy Deployments, the single-user pod, the
hub's ConfigMap) are in ``_workloads``. Each takes the typed Enclave, its tier and
the operator's settings and returns the whole object, so the secure defaults are
visible in ``tests/unit/controller/test_objects.py``, which compares whole objects
(kubespawner's ``objects.py`` style).
Names come from ``_slugs``; every object carries the ``app.kubernetes.io/*`` labels
and ``enclave.dev/enclave``; with the Enclave's ``uid`` it also carries an owner
reference (the reconciler knows it, ``enclave render`` does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies import Tier

from ._quantity import bytes_quantity, cpu_quantity, format_bytes, format_cpu
from ._schema import GROUP, KIND, VERSION
from ._settings import RenderSettings
from ._slugs import prefixed_slug
from ._spec import Dataset, Enclave

__all__ = [
    "HUB_PORT",
    "PROXY_API_PORT",
    "PROXY_PUBLIC_PORT",
    "SINGLEUSER_PORT",
    "Obj",
    "Owner",
    "component_labels",
    "dataset_claim_name",
    "hub_host",
    "make_dataset_claim",
    "make_default_deny_policy",
    "make_hub_db_claim",
    "make_hub_role",
    "make_hub_role_binding",
    "make_hub_service",
    "make_ingress",
    "make_limit_range",
    "make_namespace",
    "make_network_policies",
    "make_proxy_services",
    "make_resource_quota",
    "make_service_accounts",
    "namespace_name",
    "pod_labels",
]

HUB_PORT = 8081
PROXY_PUBLIC_PORT = 8000
PROXY_API_PORT = 8001
SINGLEUSER_PORT = 8888
DNS_PORT = 53
COMPONENT = "app.kubernetes.io/component"
HUB_SECRET = "hub-secret"  # noqa: S105 (a Secret's name, not a secret)
HUB_CONFIG = "hub-config"

Obj = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Owner:
    """The Enclave the objects belong to; ``uid`` is known only to the reconciler."""

    name: str
    uid: str | None = None


def namespace_name(enclave: Enclave) -> str:
    return prefixed_slug("enclave", enclave.name)


def _labels(enclave: Enclave, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "enclave",
        "app.kubernetes.io/instance": enclave.name,
        COMPONENT: component,
        "app.kubernetes.io/part-of": "enclave",
        "app.kubernetes.io/managed-by": "enclave-controller",
        "enclave.dev/enclave": enclave.name,
    }


def pod_labels(enclave: Enclave, component: str) -> dict[str, str]:
    """Every label a pod of ``component`` carries (the hub's KubeSpawner must set these)."""
    return _labels(enclave, component)


def component_labels(enclave: Enclave, component: str) -> dict[str, str]:
    """The labels that select one pod class (``hub``, ``proxy``, ``singleuser``)."""
    return {"app.kubernetes.io/instance": enclave.name, COMPONENT: component}


def _meta(
    enclave: Enclave, owner: Owner, *, name: str, component: str, namespaced: bool = True
) -> Obj:
    meta: Obj = {"name": name, "labels": _labels(enclave, component)}
    if namespaced:
        meta["namespace"] = namespace_name(enclave)
    if owner.uid is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


# --- namespace, identity ------------------------------------------------------------


def make_namespace(enclave: Enclave, tier: Tier, owner: Owner) -> Obj:
    meta = _meta(
        enclave, owner, name=namespace_name(enclave), component="namespace", namespaced=False
    )
    level = str(tier.pod_security.level)
    for mode in ("enforce", "audit", "warn"):
        meta["labels"][f"pod-security.kubernetes.io/{mode}"] = level
        meta["labels"][f"pod-security.kubernetes.io/{mode}-version"] = "latest"
    meta["labels"]["enclave.dev/tier"] = tier.id
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def make_service_accounts(enclave: Enclave, owner: Owner) -> list[Obj]:
    """``default``, ``proxy`` and ``singleuser`` get no token; only ``hub`` does."""
    out = []
    for name, automount in (("default", False), ("hub", True), ("proxy", False)):
        out.append(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": _meta(enclave, owner, name=name, component="identity"),
                "automountServiceAccountToken": automount,
            }
        )
    out.append(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(enclave, owner, name="singleuser", component="identity"),
            "automountServiceAccountToken": False,
        }
    )
    return out


def make_hub_role(enclave: Enclave, owner: Owner) -> Obj:
    """What KubeSpawner needs, in this namespace only: pods, their claims, and events."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(enclave, owner, name="hub", component="identity"),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods", "persistentvolumeclaims"],
                "verbs": ["get", "list", "watch", "create", "delete"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        ],
    }


def make_hub_role_binding(enclave: Enclave, owner: Owner) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(enclave, owner, name="hub", component="identity"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
        "subjects": [
            {"kind": "ServiceAccount", "name": "hub", "namespace": namespace_name(enclave)}
        ],
    }


# --- network ------------------------------------------------------------------------


def make_default_deny_policy(enclave: Enclave, owner: Owner) -> Obj:
    """Every pod of the namespace: no ingress, no egress, unless a rule below grants it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(enclave, owner, name="default-deny", component="network"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def _pods(enclave: Enclave, component: str) -> Obj:
    return {"podSelector": {"matchLabels": component_labels(enclave, component)}}


def _in_namespace(namespace: str, labels: Mapping[str, str]) -> Obj:
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": dict(labels)},
    }


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _to(*peers: Obj, ports: list[Obj]) -> Obj:
    return {"to": list(peers), "ports": ports}


def _from(*peers: Obj, ports: list[Obj]) -> Obj:
    return {"from": list(peers), "ports": ports}


def _policy(
    enclave: Enclave, owner: Owner, component: str, *, ingress: list[Obj], egress: list[Obj]
) -> Obj:
    """The policy of one pod class, named after it: what it may receive and send."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(enclave, owner, name=component, component="network"),
        "spec": {
            "podSelector": _pods(enclave, component)["podSelector"],
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def make_network_policies(
    enclave: Enclave, tier: Tier, settings: RenderSettings, owner: Owner
) -> list[Obj]:
    """Default deny, then exactly the paths the tier grants; every rule names its peer.

    No rule is ever without a destination, none is 0.0.0.0/0 and none reaches the
    cloud metadata address (the only ipBlock is the API server's, checked in
    ``RenderSettings``).
    """
    hub, proxy, singleuser = (_pods(enclave, c) for c in ("hub", "proxy", "singleuser"))
    dns = _to(
        _in_namespace(settings.dns_namespace, settings.dns_pod_labels),
        ports=[{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}],
    )
    audit = _in_namespace(settings.system_namespace, settings.audit_pod_labels)
    portal = _in_namespace(settings.system_namespace, settings.portal_pod_labels)
    ingress_controller = {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": settings.ingress_namespace}
        }
    }
    su_egress = [
        *([_to(hub, ports=_tcp(HUB_PORT))] if tier.egress.hub_api else []),
        *([_to(audit, ports=_tcp(settings.audit_port))] if tier.egress.audit_intake else []),
        *([dns] if tier.egress.dns else []),
    ]
    api_server = [
        _to(
            *({"ipBlock": {"cidr": c}} for c in settings.api_server_cidrs),
            ports=_tcp(settings.api_server_port),
        )
    ]
    hub_egress = [
        _to(singleuser, ports=_tcp(SINGLEUSER_PORT)),
        _to(proxy, ports=_tcp(PROXY_API_PORT)),
        _to(portal, ports=_tcp(settings.portal_port)),
        dns,
        *(api_server if settings.api_server_cidrs else []),
    ]
    # pod class -> (what it may receive, what it may send)
    grants: dict[str, tuple[list[Obj], list[Obj]]] = {
        "singleuser": ([_from(hub, proxy, ports=_tcp(SINGLEUSER_PORT))], su_egress),
        "hub": ([_from(singleuser, proxy, ports=_tcp(HUB_PORT))], hub_egress),
        "proxy": (
            [
                _from(ingress_controller, ports=_tcp(PROXY_PUBLIC_PORT)),
                _from(hub, ports=_tcp(PROXY_API_PORT)),
            ],
            [
                _to(hub, ports=_tcp(HUB_PORT)),
                _to(singleuser, ports=_tcp(SINGLEUSER_PORT)),
                dns,
            ],
        ),
    }
    return [
        make_default_deny_policy(enclave, owner),
        *(_policy(enclave, owner, c, ingress=i, egress=e) for c, (i, e) in grants.items()),
    ]


# --- quota ------------------------------------------------------------------------


def make_resource_quota(enclave: Enclave, settings: RenderSettings, owner: Owner) -> Obj:
    """Room for one workspace per member, the hub, the proxy and the claims; no more."""
    n = len(enclave.members)
    ws = enclave.workspace
    cpu = (
        n * cpu_quantity(ws.cpu) + cpu_quantity(settings.hub_cpu) + cpu_quantity(settings.proxy_cpu)
    )
    memory = (
        n * bytes_quantity(ws.memory)
        + bytes_quantity(settings.hub_memory)
        + bytes_quantity(settings.proxy_memory)
    )
    storage = (
        n * bytes_quantity(ws.storage)
        + bytes_quantity(settings.hub_db_storage)
        + len(enclave.datasets) * bytes_quantity(settings.dataset_claim_request)
    )
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": _meta(enclave, owner, name="enclave", component="quota"),
        "spec": {
            "hard": {
                "requests.cpu": format_cpu(cpu),
                "limits.cpu": format_cpu(cpu),
                "requests.memory": format_bytes(memory),
                "limits.memory": format_bytes(memory),
                "requests.storage": format_bytes(storage),
                # one home volume per member, the hub's database, one claim per dataset
                "persistentvolumeclaims": str(n + 1 + len(enclave.datasets)),
                # one workspace per member, the hub, the proxy, one pod of a rollout
                "pods": str(n + 3),
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def make_limit_range(enclave: Enclave, settings: RenderSettings, owner: Owner) -> Obj:
    """A container without resources gets the workspace size; none may exceed the largest pod."""
    ws = enclave.workspace
    max_cpu = max(cpu_quantity(ws.cpu), cpu_quantity(settings.hub_cpu))
    max_memory = max(bytes_quantity(ws.memory), bytes_quantity(settings.hub_memory))
    max_storage = max(bytes_quantity(ws.storage), bytes_quantity(settings.hub_db_storage))
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": _meta(enclave, owner, name="enclave", component="quota"),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": ws.cpu, "memory": ws.memory},
                    "defaultRequest": {"cpu": ws.cpu, "memory": ws.memory},
                    "max": {"cpu": format_cpu(max_cpu), "memory": format_bytes(max_memory)},
                },
                {"type": "PersistentVolumeClaim", "max": {"storage": format_bytes(max_storage)}},
            ]
        },
    }


# --- storage ----------------------------------------------------------------------


def dataset_claim_name(dataset: Dataset) -> str:
    return prefixed_slug("dataset", dataset.name)


def make_dataset_claim(
    enclave: Enclave, dataset: Dataset, settings: RenderSettings, owner: Owner
) -> Obj:
    """A read-only claim bound by name to the custodian's volume; never provisioned."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(enclave, owner, name=dataset_claim_name(dataset), component="storage"),
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": dataset.persistent_volume,
            "resources": {"requests": {"storage": settings.dataset_claim_request}},
        },
    }


def make_hub_db_claim(enclave: Enclave, settings: RenderSettings, owner: Owner) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(enclave, owner, name="hub-db", component="hub"),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": settings.hub_db_storage}},
        },
    }


# --- services, ingress --------------------------------------------------------------


def _service(
    enclave: Enclave, owner: Owner, *, name: str, component: str, port: int, target: int
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(enclave, owner, name=name, component=component),
        "spec": {
            "type": "ClusterIP",
            "selector": component_labels(enclave, component),
            "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def make_hub_service(enclave: Enclave, owner: Owner) -> Obj:
    return _service(enclave, owner, name="hub", component="hub", port=HUB_PORT, target=HUB_PORT)


def make_proxy_services(enclave: Enclave, owner: Owner) -> list[Obj]:
    return [
        _service(
            enclave,
            owner,
            name="proxy-public",
            component="proxy",
            port=80,
            target=PROXY_PUBLIC_PORT,
        ),
        _service(
            enclave,
            owner,
            name="proxy-api",
            component="proxy",
            port=PROXY_API_PORT,
            target=PROXY_API_PORT,
        ),
    ]


def hub_host(enclave: Enclave, settings: RenderSettings) -> str:
    return f"{enclave.name}.{settings.base_domain}"


def make_ingress(enclave: Enclave, settings: RenderSettings, owner: Owner) -> Obj:
    """TLS only, and only from the enclave's access networks (the controller's allow-list)."""
    meta = _meta(enclave, owner, name="hub", component="proxy")
    meta["annotations"] = {settings.ingress_allowlist_annotation: ",".join(enclave.access_networks)}
    host = hub_host(enclave, settings)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "ingressClassName": settings.ingress_class,
            "tls": [{"hosts": [host], "secretName": settings.tls_secret}],
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": "proxy-public", "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }
