"""Fixtures for the controller's tests against the real control plane."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from controller.kube import CRD_NAME, enclave_crd
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
