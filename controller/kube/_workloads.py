"""The pods of an enclave and what configures them: pure ``make_*`` functions.

The hub and proxy Deployments, the single-user pod the hub's KubeSpawner must
produce, and the hub's ConfigMap. Every pod here is restricted (non-root, no
privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only
root), carries no service-account token unless it is the hub's, and is placed on the
tier's dedicated nodes where the tier demands them. Names, labels and metadata come
from ``_objects``; the whole objects are spelt out in ``tests/unit/controller/
test_objects.py``.
"""

from __future__ import annotations

from policies import Tier

from ._objects import (
    HUB_CONFIG,
    HUB_PORT,
    HUB_SECRET,
    PROXY_API_PORT,
    PROXY_PUBLIC_PORT,
    SINGLEUSER_PORT,
    Obj,
    Owner,
    _meta,
    component_labels,
    dataset_claim_name,
    pod_labels,
    singleuser_claim_name,
)
from ._settings import HubConfig, RenderSettings
from ._slugs import prefixed_slug
from ._spec import Enclave

__all__ = [
    "CONTAINER_SECURITY",
    "make_hub_config_map",
    "make_hub_deployment",
    "make_proxy_deployment",
    "make_singleuser_pod",
]


def _pod_security(settings: RenderSettings) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "fsGroup": settings.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


#: Every container: non-root, no privilege escalation, no capabilities, read-only root.
CONTAINER_SECURITY: Obj = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _placement(enclave: Enclave, tier: Tier, settings: RenderSettings) -> Obj:
    if not tier.compute.dedicated_nodes:
        return {}
    return {
        "nodeSelector": {settings.pool_key: enclave.name},
        "tolerations": [
            {
                "key": settings.pool_key,
                "operator": "Equal",
                "value": enclave.name,
                "effect": "NoSchedule",
            }
        ],
    }


def _pod_spec(
    enclave: Enclave,
    tier: Tier,
    settings: RenderSettings,
    *,
    account: str,
    container: Obj,
    volumes: list[Obj] | None = None,
) -> Obj:
    """A pod of one container: its service account (a token for the hub only), restricted
    (pod and container security contexts), placed on the tier's nodes."""
    spec: Obj = {
        "serviceAccountName": account,
        "automountServiceAccountToken": account == "hub",
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        **_placement(enclave, tier, settings),
        "containers": [{**container, "securityContext": CONTAINER_SECURITY}],
    }
    if volumes is not None:
        spec["volumes"] = volumes
    return spec


def _resources(cpu: str, memory: str) -> Obj:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def _deployment(enclave: Enclave, owner: Owner, *, component: str, pod_spec: Obj) -> Obj:
    labels = component_labels(enclave, component)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(enclave, owner, name=component, component=component),
        "spec": {
            "replicas": 1,
            # one hub at a time: its SQLite database is on a ReadWriteOnce volume
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": pod_labels(enclave, component)},
                "spec": pod_spec,
            },
        },
    }


def make_hub_deployment(
    enclave: Enclave, tier: Tier, settings: RenderSettings, owner: Owner
) -> Obj:
    """JupyterHub, configured by the ``hub-config`` files, secrets from ``hub-secret``."""
    pod_spec = _pod_spec(
        enclave,
        tier,
        settings,
        account="hub",
        container={
            "name": "hub",
            "image": settings.hub_image,
            "args": ["jupyterhub", "--config", "/etc/jupyterhub/jupyterhub_config.py"],
            "ports": [{"name": "hub", "containerPort": HUB_PORT, "protocol": "TCP"}],
            "envFrom": [{"secretRef": {"name": HUB_SECRET}}],
            "resources": _resources(settings.hub_cpu, settings.hub_memory),
            "readinessProbe": {"httpGet": {"path": "/hub/health", "port": "hub"}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/jupyterhub", "readOnly": True},
                {"name": "db", "mountPath": "/srv/jupyterhub"},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
            ],
        },
        volumes=[
            {"name": "config", "configMap": {"name": HUB_CONFIG}},
            {"name": "db", "persistentVolumeClaim": {"claimName": "hub-db"}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        ],
    )
    return _deployment(enclave, owner, component="hub", pod_spec=pod_spec)


def make_proxy_deployment(
    enclave: Enclave, tier: Tier, settings: RenderSettings, owner: Owner
) -> Obj:
    pod_spec = _pod_spec(
        enclave,
        tier,
        settings,
        account="proxy",
        container={
            "name": "proxy",
            "image": settings.proxy_image,
            "args": [
                "configurable-http-proxy",
                "--ip=0.0.0.0",
                f"--port={PROXY_PUBLIC_PORT}",
                "--api-ip=0.0.0.0",
                f"--api-port={PROXY_API_PORT}",
                f"--default-target=http://hub:{HUB_PORT}",
                f"--error-target=http://hub:{HUB_PORT}/hub/error",
            ],
            "env": [
                {
                    "name": "CONFIGPROXY_AUTH_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": HUB_SECRET, "key": "CONFIGPROXY_AUTH_TOKEN"}
                    },
                }
            ],
            "ports": [
                {"name": "public", "containerPort": PROXY_PUBLIC_PORT, "protocol": "TCP"},
                {"name": "api", "containerPort": PROXY_API_PORT, "protocol": "TCP"},
            ],
            "resources": _resources(settings.proxy_cpu, settings.proxy_memory),
            "readinessProbe": {"httpGet": {"path": "/_chp_healthz", "port": "public"}},
        },
    )
    return _deployment(enclave, owner, component="proxy", pod_spec=pod_spec)


def make_singleuser_pod(
    enclave: Enclave, tier: Tier, settings: RenderSettings, owner: Owner, *, user: str
) -> Obj:
    """The pod the hub's KubeSpawner must produce for ``user``: the reference for its config.

    No service-account token, datasets read-only, the member's home volume, the
    workspace's resources, the restricted security context, the tier's placement.
    """
    mounts: list[Obj] = [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
    ]
    volumes: list[Obj] = [
        {"name": "home", "persistentVolumeClaim": {"claimName": singleuser_claim_name(user)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    for ds in enclave.datasets:
        vol = dataset_claim_name(ds)
        mounts.append({"name": vol, "mountPath": ds.mount_path, "readOnly": True})
        volumes.append(
            {
                "name": vol,
                "persistentVolumeClaim": {"claimName": dataset_claim_name(ds), "readOnly": True},
            }
        )
    meta = _meta(enclave, owner, name=prefixed_slug("jupyter", user), component="singleuser")
    meta["annotations"] = {"hub.jupyter.org/username": user}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": _pod_spec(
            enclave,
            tier,
            settings,
            account="singleuser",
            container={
                "name": "notebook",
                "image": enclave.workspace.image,
                "args": ["jupyterhub-singleuser"],
                "ports": [
                    {"name": "notebook", "containerPort": SINGLEUSER_PORT, "protocol": "TCP"}
                ],
                "resources": _resources(enclave.workspace.cpu, enclave.workspace.memory),
                "volumeMounts": mounts,
            },
            volumes=volumes,
        ),
    }


def make_hub_config_map(enclave: Enclave, hub_config: HubConfig, owner: Owner) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(enclave, owner, name=HUB_CONFIG, component="hub"),
        "data": dict(hub_config.files),
    }
