"""The reconciler skeleton against the real control plane: provision, repair, delete.

kopf runs in a thread with the controller's handlers, as a ServiceAccount bound to
exactly ``controller/kube/rbac.yaml`` (never as the cluster admin), logged in with
the same credentials as its writes. There is no kubelet, so the hub never becomes ready and
the Workspace condition says so.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.kube import GROUP, VERSION, RenderSettings
from controller.kube.operator import FINALIZER, OperatorConfig, run_operator
from policies import load_catalog
from tests.assets.controller import example, load_document
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.controller.helpers import wait_for

pytestmark = pytest.mark.kube


RBAC = Path(__file__).resolve().parents[3] / "controller" / "kube" / "rbac.yaml"


@pytest.fixture
def controller_identity(
    kube_api: Any,
    kube_namespace: str,
    as_service_account: Callable[..., ServiceAccountClient],
) -> Iterator[ServiceAccountClient]:
    """A client acting as a ServiceAccount bound to exactly ``controller/kube/rbac.yaml``."""
    role = yaml.safe_load(RBAC.read_text("utf-8"))
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rbac.patch_cluster_role(
        role["metadata"]["name"],
        role,
        field_manager="enclave-tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )
    account = as_service_account("enclave-controller")
    binding = f"enclave-controller-{kube_namespace}"
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": binding},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": "enclave-controller",
                    "namespace": kube_namespace,
                }
            ],
        }
    )
    custom = client.CustomObjectsApi(account.api_client)
    try:
        wait_for(
            "the controller's ClusterRoleBinding to take effect",
            lambda: _allowed(lambda: custom.list_cluster_custom_object(GROUP, VERSION, "enclaves")),
        )
        yield account
    finally:
        rbac.delete_cluster_role_binding(binding)


def _allowed(call: Callable[[], object]) -> bool:
    try:
        call()
    except client.ApiException as e:
        if e.status == 403:
            return False
        raise
    return True


@pytest.fixture
def operator(
    controller_identity: ServiceAccountClient, enclave_crd_installed: str
) -> Iterator[None]:
    config = OperatorConfig(
        api_client=controller_identity.api_client,
        catalog=load_catalog(),
        settings=RenderSettings(api_server_cidrs=("10.0.0.1/32",)),
        resync_interval_s=1.0,
        retry_delay_s=1.0,
    )
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(
        target=run_operator, args=(config,), kwargs={"stop_flag": stop, "ready_flag": ready}
    )
    thread.start()
    try:
        assert ready.wait(60), "the operator did not start within 60 s"
        yield
    finally:
        stop.set()
        thread.join(60)


def _get(kube_api: Any, name: str) -> dict[str, Any] | None:
    try:
        return client.CustomObjectsApi(kube_api).get_cluster_custom_object(
            GROUP, VERSION, "enclaves", name
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def test_an_enclave_is_provisioned_repaired_and_deleted(kube_api: Any, operator: None) -> None:
    doc = load_document(example("nbdc-standard"))
    name = f"t{secrets.token_hex(3)}-op"
    doc["metadata"]["name"] = name
    # an approval in force whatever day the test runs
    now = datetime.now(UTC)
    doc["spec"]["approval"]["notBefore"] = f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
    doc["spec"]["approval"]["notAfter"] = f"{now + timedelta(days=365):%Y-%m-%dT%H:%M:%SZ}"
    custom = client.CustomObjectsApi(kube_api)
    custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    ns = f"enclave-{name}"
    networking = client.NetworkingV1Api(kube_api)

    wait_for(
        "the status to report isolation",
        lambda: _condition(_get(kube_api, name), "NetworkIsolation").get("status") == "True",
    )
    stored = _get(kube_api, name)
    assert stored is not None
    assert FINALIZER in stored["metadata"]["finalizers"]
    assert stored["status"]["phase"] == "Provisioning"
    assert stored["status"]["observedGeneration"] == stored["metadata"]["generation"]
    assert [c["type"] for c in stored["status"]["conditions"]] == [
        "Approval",
        "Namespace",
        "NetworkIsolation",
        "Identity",
        "Storage",
        "Workspace",
    ]
    workspace = _condition(stored, "Workspace")
    assert (workspace["status"], workspace["reason"]) == ("False", "HubNotReady")
    policy_names = {p.metadata.name for p in networking.list_namespaced_network_policy(ns).items}
    assert policy_names == {"default-deny", "hub", "proxy", "singleuser"}

    # Drift: an egress rule is opened to everywhere; the timer repairs it and says so.
    networking.patch_namespaced_network_policy(
        "singleuser", ns, {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}}
    )
    wait_for(
        "NetworkIsolation False with reason DriftRepaired",
        lambda: (
            _condition(_get(kube_api, name), "NetworkIsolation").get("reason") == "DriftRepaired"
        ),
    )
    live = networking.read_namespaced_network_policy("singleuser", ns)
    assert all(rule.to[0].ip_block is None for rule in live.spec.egress)
    wait_for(
        "NetworkIsolation True again",
        lambda: _condition(_get(kube_api, name), "NetworkIsolation").get("status") == "True",
    )
    events = client.CoreV1Api(kube_api).list_event_for_all_namespaces(
        field_selector=f"involvedObject.name={name}"
    )
    assert "DriftRepaired" in {e.reason for e in events.items}

    # Drift: the default deny is deleted; the timer puts it back.
    networking.delete_namespaced_network_policy("default-deny", ns)

    def restored() -> bool:
        try:
            networking.read_namespaced_network_policy("default-deny", ns)
        except client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    wait_for("the default-deny policy to be restored", restored)

    # Deletion: the finalizer holds the Enclave until its namespace is gone.
    custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)
    wait_for("the Enclave to be deleted", lambda: _get(kube_api, name) is None, timeout=90)
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(kube_api).read_namespace(ns)
    assert caught.value.status == 404


def test_an_expired_enclave_is_not_provisioned(kube_api: Any, operator: None) -> None:
    doc = load_document(example("tommo-standard"))
    name = f"t{secrets.token_hex(3)}-old"
    doc["metadata"]["name"] = name
    doc["spec"]["approval"]["notBefore"] = "2020-01-01T00:00:00Z"
    doc["spec"]["approval"]["notAfter"] = "2021-01-01T00:00:00Z"
    client.CustomObjectsApi(kube_api).create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    try:
        wait_for(
            "the phase Suspended",
            lambda: ((_get(kube_api, name) or {}).get("status") or {}).get("phase") == "Suspended",
        )
        assert _condition(_get(kube_api, name), "Approval")["reason"] == "Expired"
        with pytest.raises(client.ApiException) as caught:
            client.CoreV1Api(kube_api).read_namespace(f"enclave-{name}")
        assert caught.value.status == 404
    finally:
        client.CustomObjectsApi(kube_api).delete_cluster_custom_object(
            GROUP, VERSION, "enclaves", name
        )
        # the operator releases its finalizer before it stops
        wait_for("the Enclave to be deleted", lambda: _get(kube_api, name) is None)


def test_enclave_controller_run_kube_provisions_and_stops_on_sigterm(
    kube_api: Any, controller_identity: ServiceAccountClient, enclave_crd_installed: str
) -> None:
    enclave = Path(sys.executable).parent / "enclave"
    process = subprocess.Popen(
        [
            str(enclave),
            "controller",
            "run",
            "--kube",
            "--kubeconfig",
            str(controller_identity.path),
            "--resync-interval",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    doc = load_document(example("tommo-strong"))
    name = f"t{secrets.token_hex(3)}-cli"
    doc["metadata"]["name"] = name
    now = datetime.now(UTC)
    doc["spec"]["approval"]["notBefore"] = f"{now - timedelta(days=1):%Y-%m-%dT%H:%M:%SZ}"
    custom = client.CustomObjectsApi(kube_api)
    custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    try:
        wait_for(
            "the controller to report isolation",
            lambda: _condition(_get(kube_api, name), "NetworkIsolation").get("status") == "True",
        )
        custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)
        wait_for("the Enclave to be deleted", lambda: _get(kube_api, name) is None, timeout=90)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()[-2000:]
