"""The pods of an enclave: pure ``make_*`` functions and the single-user pod's spec.

The hub and proxy Deployments, and the traits that make the hub's KubeSpawner
create each member's pod (``singleuser_spawner_traits``). Every pod here is
restricted (non-root, no privilege escalation, all capabilities dropped,
RuntimeDefault seccomp, read-only root), carries no service-account token unless it
is the hub's, and is placed on the tier's dedicated nodes where the tier demands
them. Secrets reach a container only as files in a memory volume, copied there,
readable by their owner only, by an init container (``secret_copy_container``):
never in an environment variable, an argument or a ConfigMap. Names, labels and
metadata come from ``_objects``; the whole objects are spelt out in
``tests/unit/controller/test_objects.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from policies import Tier

from ._objects import (
    COMPONENT,
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
    namespace_name,
    pod_labels,
)
from ._quantity import bytes_quantity, cpu_quantity
from ._settings import RenderSettings
from ._spec import Enclave

__all__ = [
    "CONTAINER_SECURITY",
    "HUB_AUDIT_SECRET",
    "HUB_CONFIG_DIGEST",
    "HUB_SECRET_FILES",
    "OVERLAY_DIR",
    "OVERLAY_FILE",
    "SECRETS_DIR",
    "WORKSPACE_AUDIT_SECRET",
    "WORKSPACE_SPOOL",
    "hub_config_digest",
    "make_hub_deployment",
    "make_proxy_deployment",
    "secret_copy_container",
    "singleuser_spawner_traits",
]

#: The hub's intake token (``source=hub``, bound to the enclave), key ``token``.
HUB_AUDIT_SECRET = "hub-audit-token"  # noqa: S105 (a Secret's name)
#: The workspaces' intake token (``source=workspace``, bound to the enclave), key ``token``.
WORKSPACE_AUDIT_SECRET = "workspace-audit-token"  # noqa: S105 (a Secret's name)
#: Where a container finds its secrets: a memory volume, each file mode 0400.
SECRETS_DIR = "/run/enclave"
#: Where the copying init container reads the Secrets' keys (no other container does).
_SECRETS_IN = "/run/enclave-in"
#: The hub's secret files: (Secret, {key: file name in ``SECRETS_DIR``}).
HUB_SECRET_FILES: tuple[tuple[str, Mapping[str, str]], ...] = (
    (
        HUB_SECRET,
        {
            "OAUTH_CLIENT_SECRET": "client_secret",
            "CONFIGPROXY_AUTH_TOKEN": "proxy_token",
            "JUPYTERHUB_CRYPT_KEY": "crypt_key",
            "JPY_COOKIE_SECRET": "cookie_secret",
        },
    ),
    (HUB_AUDIT_SECRET, {"token": "audit_token"}),
)
_WORKSPACE_SECRET_FILES: tuple[tuple[str, Mapping[str, str]], ...] = (
    (WORKSPACE_AUDIT_SECRET, {"token": "audit_token"}),
)
#: The operator's tier overlay in the ``hub-config`` ConfigMap, as a workspace sees it.
OVERLAY_DIR = "/etc/enclave"
OVERLAY_FILE = "tier-overlay.yaml"
#: The tier overlay from ``hub-config``, read-only at ``OVERLAY_DIR`` (hub and workspaces).
_OVERLAY_MOUNT: Obj = {"name": "catalog", "mountPath": OVERLAY_DIR, "readOnly": True}
_OVERLAY_VOLUME: Obj = {
    "name": "catalog",
    "configMap": {"name": HUB_CONFIG, "items": [{"key": OVERLAY_FILE, "path": OVERLAY_FILE}]},
}
#: The hub pod template's annotation holding :func:`hub_config_digest`.
HUB_CONFIG_DIGEST = "enclave.dev/hub-config-digest"
#: A workspace's durable audit spool: on the member's home volume, so the events
#: not yet acknowledged survive a restart of the pod.
WORKSPACE_SPOOL = "/home/jovyan/.enclave-audit-spool.db"


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
    init_containers: list[Obj] | None = None,
) -> Obj:
    """A pod of one container: its service account (a token for the hub only), restricted
    (pod and container security contexts), placed on the tier's nodes."""
    spec: Obj = {
        "serviceAccountName": account,
        "automountServiceAccountToken": account == "hub",
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        **_placement(enclave, tier, settings),
    }
    if init_containers is not None:
        spec["initContainers"] = init_containers
    spec["containers"] = [{**container, "securityContext": CONTAINER_SECURITY}]
    if volumes is not None:
        spec["volumes"] = volumes
    return spec


def _resources(cpu: str, memory: str) -> Obj:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def _secret_volumes(sources: Sequence[tuple[str, Mapping[str, str]]]) -> list[Obj]:
    """The Secrets' keys as files for the copying init container (group-readable: the
    pod's ``fsGroup``), and the memory volume the copies go to."""
    return [
        {
            "name": "secrets-in",
            "projected": {
                "defaultMode": 0o440,
                "sources": [
                    {
                        "secret": {
                            "name": name,
                            "items": [{"key": k, "path": f} for k, f in files.items()],
                        }
                    }
                    for name, files in sources
                ],
            },
        },
        {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]


def secret_copy_container(*, image: str, resources: Obj) -> Obj:
    """The init container that copies each secret file, mode 0400, into ``SECRETS_DIR``.

    A Secret's files are group-readable once the pod has an ``fsGroup``, and the hub
    and the workspace refuse a secret file anyone but its owner can read; the copy,
    made under ``umask 077`` by the pod's own uid, is its owner's only."""
    return {
        "name": "secrets",
        "image": image,
        "command": ["sh", "-c", f"umask 077 && cp {_SECRETS_IN}/* {SECRETS_DIR}/"],
        "resources": resources,
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "secrets-in", "mountPath": _SECRETS_IN, "readOnly": True},
            {"name": "secrets", "mountPath": SECRETS_DIR},
        ],
    }


def hub_config_digest(config_map: Obj) -> str:
    """``sha256:<hex>`` of the ``hub-config`` ConfigMap's data (canonical JSON)."""
    data = json.dumps(config_map["data"], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def _deployment(
    enclave: Enclave,
    owner: Owner,
    *,
    component: str,
    pod_spec: Obj,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    labels = component_labels(enclave, component)
    template_meta: Obj = {"labels": pod_labels(enclave, component)}
    if annotations:
        template_meta["annotations"] = dict(annotations)
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
                "metadata": template_meta,
                "spec": pod_spec,
            },
        },
    }


def make_hub_deployment(
    enclave: Enclave, tier: Tier, settings: RenderSettings, owner: Owner, *, config_map: Obj
) -> Obj:
    """JupyterHub, configured by ``config_map`` (``hub-config``); its secrets (``hub-secret``
    and ``hub-audit-token``) are files in ``SECRETS_DIR``, nowhere else.

    JupyterHub reads its configuration once, at start: the pod template carries the
    configuration's digest, so a changed ``hub-config`` changes the template and the
    Deployment replaces the hub's pod. The tier overlay, when there is one, is mounted
    where the workspaces see it too (``OVERLAY_DIR``): the authenticator reads it."""
    resources = _resources(settings.hub_cpu, settings.hub_memory)
    overlay = OVERLAY_FILE in config_map["data"]
    pod_spec = _pod_spec(
        enclave,
        tier,
        settings,
        account="hub",
        init_containers=[secret_copy_container(image=settings.hub_image, resources=resources)],
        container={
            "name": "hub",
            "image": settings.hub_image,
            "args": ["jupyterhub", "--config", "/etc/jupyterhub/jupyterhub_config.py"],
            "ports": [{"name": "hub", "containerPort": HUB_PORT, "protocol": "TCP"}],
            "resources": resources,
            "readinessProbe": {"httpGet": {"path": "/hub/health", "port": "hub"}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/jupyterhub", "readOnly": True},
                {"name": "db", "mountPath": "/srv/jupyterhub"},
                {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
                {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
                *([_OVERLAY_MOUNT] if overlay else []),
            ],
        },
        volumes=[
            {"name": "config", "configMap": {"name": HUB_CONFIG}},
            {"name": "db", "persistentVolumeClaim": {"claimName": "hub-db"}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            *_secret_volumes(HUB_SECRET_FILES),
            *([_OVERLAY_VOLUME] if overlay else []),
        ],
    )
    return _deployment(
        enclave,
        owner,
        component="hub",
        pod_spec=pod_spec,
        annotations={HUB_CONFIG_DIGEST: hub_config_digest(config_map)},
    )


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


def singleuser_spawner_traits(
    enclave: Enclave, tier: Tier, settings: RenderSettings, *, overlay: bool
) -> Obj:
    """The hub's ``KubeSpawner`` traits: what makes each member's pod restricted.

    The member's home volume (``home-<user>``, made by KubeSpawner, the workspace's
    size), the datasets read-only, the workspace's intake token as a file copied
    from ``workspace-audit-token`` (and, with ``overlay``, the operator's tier overlay
    from the ``hub-config`` ConfigMap), no service-account token, the workspace's
    resources (requests = limits), the restricted security contexts, the tier's
    placement, and the labels the single-user NetworkPolicy selects.
    """
    ws = enclave.workspace
    mounts: list[Obj] = [
        {"name": "home", "mountPath": "/home/jovyan"},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (a private emptyDir)
        {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
    ]
    volumes: list[Obj] = [
        {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        *_secret_volumes(_WORKSPACE_SECRET_FILES),
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
    if overlay:
        mounts.append(_OVERLAY_MOUNT)
        volumes.append(_OVERLAY_VOLUME)
    cores = cpu_quantity(ws.cpu) / 1000
    memory = bytes_quantity(ws.memory)
    placement = _placement(enclave, tier, settings)
    labels = pod_labels(enclave, "singleuser")
    return {
        "namespace": namespace_name(enclave),
        "image": ws.image,
        "cmd": ["jupyterhub-singleuser"],
        "port": SINGLEUSER_PORT,
        "pod_name_template": "jupyter-{user_server}",
        # KubeSpawner's own labels would replace these (component singleuser-server,
        # name jupyterhub): the single-user NetworkPolicy would not select the pod
        "component_label": "singleuser",
        "common_labels": {k: v for k, v in labels.items() if k != COMPONENT},
        "extra_labels": labels,
        "service_account": "singleuser",
        "automount_service_account_token": False,
        "extra_pod_config": {"enableServiceLinks": False},
        "uid": settings.run_as_user,
        "gid": settings.run_as_group,
        "fs_gid": settings.run_as_group,
        "privileged": False,
        "allow_privilege_escalation": False,
        "pod_security_context": _pod_security(settings),
        "container_security_context": CONTAINER_SECURITY,
        "cpu_limit": cores,
        "cpu_guarantee": cores,
        "mem_limit": memory,
        "mem_guarantee": memory,
        "init_containers": [
            secret_copy_container(image=ws.image, resources=_resources(ws.cpu, ws.memory))
        ],
        "volumes": volumes,
        "volume_mounts": mounts,
        "storage_pvc_ensure": True,
        "pvc_name_template": "home-{user_server}",
        "storage_capacity": ws.storage,
        "storage_access_modes": ["ReadWriteOnce"],
        "storage_extra_labels": labels,
        "node_selector": placement.get("nodeSelector", {}),
        "tolerations": placement.get("tolerations", []),
    }
