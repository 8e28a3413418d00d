"""The real Helm (Helm v4's Go SDK) installs, upgrades and uninstalls a chart.

The chart is ``tests/assets/charts/trivial``; the API server is the test control
plane, so every object Helm writes goes through real admission and RBAC.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.harness.helm import Helm, HelmHarnessError, helm_sdk_version

pytestmark = pytest.mark.kube

CHART = Path(__file__).resolve().parents[2] / "assets" / "charts" / "trivial"


def _greeting(core: client.CoreV1Api, namespace: str) -> str:
    return str(core.read_namespaced_config_map("demo-greeting", namespace).data["greeting"])


def test_helm_is_v4():
    assert helm_sdk_version().startswith("v4.")


def test_chart_installs_upgrades_and_uninstalls(helm: Helm, kube_api: Any, kube_namespace: str):
    core = client.CoreV1Api(kube_api)

    installed = helm.install(CHART, release="demo")
    assert (installed.name, installed.namespace, installed.revision) == (
        "demo",
        kube_namespace,
        1,
    )
    assert installed.status == "deployed"
    assert _greeting(core, kube_namespace) == "hello"
    account = core.read_namespaced_service_account("demo", kube_namespace)
    assert account.metadata.labels["app.kubernetes.io/managed-by"] == "Helm"

    upgraded = helm.upgrade(CHART, release="demo", values={"greeting": "bonjour"})
    assert (upgraded.revision, upgraded.status) == (2, "deployed")
    assert _greeting(core, kube_namespace) == "bonjour"
    assert [r.revision for r in helm.history(release="demo")] == [1, 2]

    assert helm.uninstall(release="demo").status == "uninstalled"
    assert helm.list_releases() == []
    # Helm deleted the objects (neither carries a finalizer, so they are gone at once).
    for read in (
        lambda: core.read_namespaced_config_map("demo-greeting", kube_namespace),
        lambda: core.read_namespaced_service_account("demo", kube_namespace),
    ):
        with pytest.raises(client.ApiException) as caught:
            read()
        assert caught.value.status == 404


def test_values_schema_rejects_unknown_values(helm: Helm):
    with pytest.raises(HelmHarnessError, match="additional properties 'colour' not allowed"):
        helm.install(CHART, release="bad", values={"colour": "blue"})
    assert helm.list_releases() == []
