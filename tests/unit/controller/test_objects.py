"""Whole-object tests of the ``make_*`` functions (kubespawner ``tests/test_objects.py`` style).

Each test spells out the complete object, so every secure default (no token, no
privilege, read-only datasets, default deny) is visible here and any change to
one shows up as a diff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controller.kube import Approval, Dataset, Enclave, Member, RenderSettings, Workspace
from controller.kube._objects import (
    Owner,
    make_dataset_claim,
    make_hub_role,
    make_hub_role_binding,
    make_ingress,
    make_limit_range,
    make_namespace,
    make_network_policies,
    make_resource_quota,
    make_service_accounts,
)
from controller.kube._workloads import (
    make_hub_deployment,
    make_proxy_deployment,
    singleuser_spawner_traits,
)
from policies import load_catalog

ENCLAVE = Enclave(
    name="demo",
    tier="tommo-strong",
    display_name="Demo",
    approval=Approval(
        ethics_review_id="E-1",
        data_use_agreement_id="D-1",
        not_before=datetime(2026, 1, 1, tzinfo=UTC),
        not_after=datetime(2027, 1, 1, tzinfo=UTC),
    ),
    members=(Member(user="a@x.example", role="pi"), Member(user="b@x.example", role="researcher")),
    datasets=(Dataset(name="geno", persistent_volume="pv-geno", mount_path="/data/geno"),),
    workspace=Workspace(image="reg.example/su:1", cpu="2", memory="8Gi", storage="20Gi"),
    access_networks=("192.0.2.0/24", "198.51.100.0/25"),
)
STRONG = load_catalog().get("tommo-strong")
STANDARD = load_catalog().get("nbdc-standard")
SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))
OWNER = Owner(name="demo", uid="0000-uid")
NS = "enclave-demo"


def labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "enclave",
        "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "enclave",
        "app.kubernetes.io/managed-by": "enclave-controller",
        "enclave.dev/enclave": "demo",
    }


OWNER_REFS = [
    {
        "apiVersion": "enclave.dev/v1alpha1",
        "kind": "Enclave",
        "name": "demo",
        "uid": "0000-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
]


def meta(name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": labels(component),
        "namespace": NS,
        "ownerReferences": OWNER_REFS,
    }


def pods(component: str) -> dict[str, Any]:
    return {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/instance": "demo",
                "app.kubernetes.io/component": component,
            }
        }
    }


def tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def test_namespace_enforces_the_tiers_pod_security_level() -> None:
    assert make_namespace(ENCLAVE, STRONG, OWNER) == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NS,
            "labels": {
                **labels("namespace"),
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/audit": "restricted",
                "pod-security.kubernetes.io/audit-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "latest",
                "enclave.dev/tier": "tommo-strong",
            },
            "ownerReferences": OWNER_REFS,
        },
    }


def test_network_policies_deny_everything_then_grant_the_tiers_paths() -> None:
    system = {"matchLabels": {"kubernetes.io/metadata.name": "enclave-system"}}
    assert make_network_policies(ENCLAVE, STRONG, SETTINGS, OWNER) == [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("default-deny", "network"),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("singleuser", "network"),
            "spec": {
                **pods("singleuser"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [pods("hub"), pods("proxy")], "ports": tcp(8888)}],
                # hub API and audit intake only: no DNS, no internet, no metadata
                "egress": [
                    {"to": [pods("hub")], "ports": tcp(8081)},
                    {
                        "to": [
                            {
                                "namespaceSelector": system,
                                "podSelector": {
                                    "matchLabels": {"app.kubernetes.io/component": "audit"}
                                },
                            }
                        ],
                        "ports": tcp(8700),
                    },
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("hub", "network"),
            "spec": {
                **pods("hub"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [pods("singleuser"), pods("proxy")], "ports": tcp(8081)}],
                "egress": [
                    {"to": [pods("singleuser")], "ports": tcp(8888)},
                    {"to": [pods("proxy")], "ports": tcp(8001)},
                    {
                        "to": [
                            {
                                "namespaceSelector": system,
                                "podSelector": {
                                    "matchLabels": {"app.kubernetes.io/component": "portal"}
                                },
                            }
                        ],
                        "ports": tcp(8000),
                    },
                    DNS,
                    {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": tcp(6443)},
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("proxy", "network"),
            "spec": {
                **pods("proxy"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {
                                    "matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}
                                }
                            }
                        ],
                        "ports": tcp(8000),
                    },
                    {"from": [pods("hub")], "ports": tcp(8001)},
                ],
                "egress": [
                    {"to": [pods("hub")], "ports": tcp(8081)},
                    {"to": [pods("singleuser")], "ports": tcp(8888)},
                    DNS,
                ],
            },
        },
    ]


def test_only_the_hub_service_account_mounts_a_token() -> None:
    accounts = make_service_accounts(ENCLAVE, OWNER)
    assert [(a["metadata"]["name"], a["automountServiceAccountToken"]) for a in accounts] == [
        ("default", False),
        ("hub", True),
        ("proxy", False),
        ("singleuser", False),
    ]


def test_hub_role_is_pods_and_claims_in_its_namespace_only() -> None:
    assert make_hub_role(ENCLAVE, OWNER) == {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta("hub", "identity"),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["pods", "persistentvolumeclaims"],
                "verbs": ["get", "list", "watch", "create", "delete"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
        ],
    }
    assert make_hub_role_binding(ENCLAVE, OWNER)["subjects"] == [
        {"kind": "ServiceAccount", "name": "hub", "namespace": NS}
    ]


def test_dataset_claim_is_read_only_and_bound_by_name() -> None:
    assert make_dataset_claim(ENCLAVE, ENCLAVE.datasets[0], SETTINGS, OWNER) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta("dataset-geno", "storage"),
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": "pv-geno",
            "resources": {"requests": {"storage": "1Mi"}},
        },
    }


def test_resource_quota_fits_one_workspace_per_member() -> None:
    assert make_resource_quota(ENCLAVE, SETTINGS, OWNER) == {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta("enclave", "quota"),
        "spec": {
            "hard": {
                "requests.cpu": "4700m",  # 2 x 2 + 500m hub + 200m proxy
                "limits.cpu": "4700m",
                "requests.memory": "17664Mi",  # 2 x 8Gi + 1Gi + 256Mi
                "limits.memory": "17664Mi",
                "requests.storage": "41985Mi",  # 2 x 20Gi + 1Gi + 1Mi
                "persistentvolumeclaims": "4",
                "pods": "5",
                "services.loadbalancers": "0",
                "services.nodeports": "0",
            }
        },
    }


def test_limit_range_defaults_to_the_workspace_size() -> None:
    assert make_limit_range(ENCLAVE, SETTINGS, OWNER)["spec"] == {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "2", "memory": "8Gi"},
                "defaultRequest": {"cpu": "2", "memory": "8Gi"},
                "max": {"cpu": "2", "memory": "8Gi"},
            },
            {"type": "PersistentVolumeClaim", "max": {"storage": "20Gi"}},
        ]
    }


RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEDICATED = {
    "nodeSelector": {"enclave.dev/pool": "demo"},
    "tolerations": [
        {"key": "enclave.dev/pool", "operator": "Equal", "value": "demo", "effect": "NoSchedule"}
    ],
}


def copy_secrets(image: str, cpu: str, memory: str) -> dict[str, Any]:
    """The init container that copies a pod's secret files, owner-only, to /run/enclave."""
    return {
        "name": "secrets",
        "image": image,
        "command": ["sh", "-c", "umask 077 && cp /run/enclave-in/* /run/enclave/"],
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [
            {"name": "secrets-in", "mountPath": "/run/enclave-in", "readOnly": True},
            {"name": "secrets", "mountPath": "/run/enclave"},
        ],
    }


#: The memory volume each pod's secret files are copied to.
SECRETS = {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}


def test_singleuser_spawner_has_no_token_and_reads_datasets_only() -> None:
    """What the hub's KubeSpawner makes each member's pod from (whole, so it shows)."""
    assert singleuser_spawner_traits(ENCLAVE, STRONG, SETTINGS, overlay=True) == {
        "namespace": NS,
        "image": "reg.example/su:1",
        "cmd": ["jupyterhub-singleuser"],
        "port": 8888,
        "pod_name_template": "jupyter-{user_server}",
        "component_label": "singleuser",
        "common_labels": {
            k: v for k, v in labels("singleuser").items() if k != "app.kubernetes.io/component"
        },
        "extra_labels": labels("singleuser"),
        "service_account": "singleuser",
        "automount_service_account_token": False,
        "extra_pod_config": {"enableServiceLinks": False},
        "uid": 1000,
        "gid": 1000,
        "fs_gid": 1000,
        "privileged": False,
        "allow_privilege_escalation": False,
        "pod_security_context": RESTRICTED_POD,
        "container_security_context": RESTRICTED_CONTAINER,
        "cpu_limit": 2.0,
        "cpu_guarantee": 2.0,
        "mem_limit": 8 << 30,
        "mem_guarantee": 8 << 30,
        "init_containers": [copy_secrets("reg.example/su:1", "2", "8Gi")],
        "volumes": [
            {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            {
                "name": "secrets-in",
                "projected": {
                    "defaultMode": 0o440,
                    "sources": [
                        {
                            "secret": {
                                "name": "workspace-audit-token",
                                "items": [{"key": "token", "path": "audit_token"}],
                            }
                        }
                    ],
                },
            },
            SECRETS,
            {
                "name": "dataset-geno",
                "persistentVolumeClaim": {"claimName": "dataset-geno", "readOnly": True},
            },
            {
                "name": "catalog",
                "configMap": {
                    "name": "hub-config",
                    "items": [{"key": "tier-overlay.yaml", "path": "tier-overlay.yaml"}],
                },
            },
        ],
        "volume_mounts": [
            {"name": "home", "mountPath": "/home/jovyan"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "secrets", "mountPath": "/run/enclave", "readOnly": True},
            {"name": "dataset-geno", "mountPath": "/data/geno", "readOnly": True},
            {"name": "catalog", "mountPath": "/etc/enclave", "readOnly": True},
        ],
        "storage_pvc_ensure": True,
        "pvc_name_template": "home-{user_server}",
        "storage_capacity": "20Gi",
        "storage_access_modes": ["ReadWriteOnce"],
        "storage_extra_labels": labels("singleuser"),
        "node_selector": DEDICATED["nodeSelector"],
        "tolerations": DEDICATED["tolerations"],
    }


def test_singleuser_spawner_on_shared_nodes_without_an_overlay() -> None:
    traits = singleuser_spawner_traits(ENCLAVE, STANDARD, SETTINGS, overlay=False)
    assert (traits["node_selector"], traits["tolerations"]) == ({}, [])
    assert "catalog" not in [v["name"] for v in traits["volumes"]]
    assert "catalog" not in [m["name"] for m in traits["volume_mounts"]]


#: The keys of hub-secret the hub reads, and the file each becomes in /run/enclave.
HUB_SECRET_ITEMS = [
    {"key": "OAUTH_CLIENT_SECRET", "path": "client_secret"},
    {"key": "CONFIGPROXY_AUTH_TOKEN", "path": "proxy_token"},
    {"key": "JUPYTERHUB_CRYPT_KEY", "path": "crypt_key"},
    {"key": "JPY_COOKIE_SECRET", "path": "cookie_secret"},
]


#: A ``hub-config`` ConfigMap (its data is all the hub Deployment reads of it).
HUB_CONFIG_MAP = {"data": {"jupyterhub_config.py": "c = get_config()\n"}}
#: sha256 of ``{"jupyterhub_config.py":"c = get_config()\n"}``.
HUB_CONFIG_DIGEST = "sha256:0e69dc02a029f27c530338db3ad1077d8728003d6b9190ef9e878658f71d7ae0"


def test_hub_deployment() -> None:
    assert make_hub_deployment(ENCLAVE, STRONG, SETTINGS, OWNER, config_map=HUB_CONFIG_MAP) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("hub", "hub"),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": "demo",
                    "app.kubernetes.io/component": "hub",
                }
            },
            "template": {
                "metadata": {
                    "labels": labels("hub"),
                    "annotations": {"enclave.dev/hub-config-digest": HUB_CONFIG_DIGEST},
                },
                "spec": {
                    "serviceAccountName": "hub",
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": RESTRICTED_POD,
                    **DEDICATED,
                    "initContainers": [
                        copy_secrets("registry.example/enclave/hub:0.1.0", "500m", "1Gi")
                    ],
                    "containers": [
                        {
                            "name": "hub",
                            "image": "registry.example/enclave/hub:0.1.0",
                            "args": [
                                "jupyterhub",
                                "--config",
                                "/etc/jupyterhub/jupyterhub_config.py",
                            ],
                            "ports": [{"name": "hub", "containerPort": 8081, "protocol": "TCP"}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"cpu": "500m", "memory": "1Gi"},
                            },
                            "securityContext": RESTRICTED_CONTAINER,
                            "readinessProbe": {"httpGet": {"path": "/hub/health", "port": "hub"}},
                            "volumeMounts": [
                                {
                                    "name": "config",
                                    "mountPath": "/etc/jupyterhub",
                                    "readOnly": True,
                                },
                                {"name": "db", "mountPath": "/srv/jupyterhub"},
                                {"name": "tmp", "mountPath": "/tmp"},
                                {
                                    "name": "secrets",
                                    "mountPath": "/run/enclave",
                                    "readOnly": True,
                                },
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "hub-config"}},
                        {"name": "db", "persistentVolumeClaim": {"claimName": "hub-db"}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        {
                            "name": "secrets-in",
                            "projected": {
                                "defaultMode": 0o440,
                                "sources": [
                                    {"secret": {"name": "hub-secret", "items": HUB_SECRET_ITEMS}},
                                    {
                                        "secret": {
                                            "name": "hub-audit-token",
                                            "items": [{"key": "token", "path": "audit_token"}],
                                        }
                                    },
                                ],
                            },
                        },
                        SECRETS,
                    ],
                },
            },
        },
    }


def test_no_secret_reaches_the_hub_through_its_environment() -> None:
    """Environment variables show in /proc/PID/environ and are inherited by every child
    process (the idle culler); the hub's secrets are owner-only files instead."""
    hub_deployment = make_hub_deployment(
        ENCLAVE, STRONG, SETTINGS, OWNER, config_map=HUB_CONFIG_MAP
    )
    spec = hub_deployment["spec"]["template"]["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        assert "envFrom" not in container
        assert "env" not in container
    hub = spec["containers"][0]
    assert {"name": "secrets", "mountPath": "/run/enclave", "readOnly": True} in hub["volumeMounts"]
    # only the copying init container sees the Secrets' own files
    assert "secrets-in" not in [m["name"] for m in hub["volumeMounts"]]


def test_the_hub_reads_the_tier_overlay_where_the_workspaces_do() -> None:
    """The authenticator decides entry with the overlay: the hub mounts it from
    ``hub-config`` at the path its configuration (and every workspace) names."""
    config_map = {"data": {**HUB_CONFIG_MAP["data"], "tier-overlay.yaml": "tiers: {}\n"}}
    spec = make_hub_deployment(ENCLAVE, STRONG, SETTINGS, OWNER, config_map=config_map)["spec"]
    pod = spec["template"]["spec"]
    assert {"name": "catalog", "mountPath": "/etc/enclave", "readOnly": True} in pod["containers"][
        0
    ]["volumeMounts"]
    assert {
        "name": "catalog",
        "configMap": {
            "name": "hub-config",
            "items": [{"key": "tier-overlay.yaml", "path": "tier-overlay.yaml"}],
        },
    } in pod["volumes"]
    digest = spec["template"]["metadata"]["annotations"]["enclave.dev/hub-config-digest"]
    assert digest != HUB_CONFIG_DIGEST


def test_shared_node_tiers_get_no_placement() -> None:
    spec = make_proxy_deployment(ENCLAVE, STANDARD, SETTINGS, OWNER)["spec"]["template"]["spec"]
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec


def test_ingress_carries_the_access_networks_and_tls() -> None:
    assert make_ingress(ENCLAVE, SETTINGS, OWNER) == {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **meta("hub", "proxy"),
            "annotations": {
                "nginx.ingress.kubernetes.io/whitelist-source-range": (
                    "192.0.2.0/24,198.51.100.0/25"
                )
            },
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["demo.enclave.example"], "secretName": "enclave-tls"}],
            "rules": [
                {
                    "host": "demo.enclave.example",
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


def test_without_a_uid_there_is_no_owner_reference() -> None:
    ns = make_namespace(ENCLAVE, STRONG, Owner(name="demo"))
    assert "ownerReferences" not in ns["metadata"]


@pytest.mark.parametrize(
    "cidr", ["0.0.0.0/0", "::/0", "169.254.0.0/16", "169.254.169.254/32", "10.0.0.1/24"]
)
def test_settings_refuse_an_api_server_rule_to_everywhere_or_to_metadata(cidr: str) -> None:
    with pytest.raises(ValueError, match="api_server_cidrs"):
        RenderSettings(api_server_cidrs=(cidr,))
