"""Fixtures for the controller's tests against the real control plane."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from audit.client import AuditClient
from controller.kube import CRD_NAME, GROUP, VERSION, enclave_crd
from controller.kube._lifecycle import AuditRecorder
from tests.harness.audit_service import AuditEnv, ServiceProcess, make_audit_env
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.controller.helpers import wait_for


@pytest.fixture(scope="session")
def enclave_crd_installed(kube_api: Any) -> str:
    """The ``enclaves.enclave.dev`` CRD, applied once per session and Established."""
    ext = client.ApiextensionsV1Api(kube_api)
    ext.patch_custom_resource_definition(
        CRD_NAME,
        enclave_crd(),
        field_manager="enclave-tests",
        force=True,
        _content_type="application/apply-patch+yaml",
    )

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for("the Enclave CRD to be Established", established)
    return CRD_NAME


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
def audit_env(tmp_path: Path) -> AuditEnv:
    """A fresh audit store with an intake token for ``source=controller``."""
    return make_audit_env(tmp_path / "audit", sources=("controller",))


@pytest.fixture
def audit_service(audit_env: AuditEnv) -> Iterator[ServiceProcess]:
    """The real audit service (stop and start it to make an outage)."""
    service = ServiceProcess(audit_env).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def audit_recorder(
    audit_env: AuditEnv, audit_service: ServiceProcess, tmp_path: Path
) -> Iterator[AuditRecorder]:
    """The controller's audit client (durable spool) for ``audit_service``."""
    audit = AuditClient.http(
        url=audit_service.url,
        token=audit_env.tokens["controller"],
        spool_path=tmp_path / "controller-spool.db",
        source="controller",
        max_backoff=0.5,
    )
    try:
        yield AuditRecorder(client=audit, confirm_timeout_s=2.0)
    finally:
        audit.close(flush_timeout=1.0)
