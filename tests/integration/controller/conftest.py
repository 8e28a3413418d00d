"""Fixtures for the controller's tests against the real control plane."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from controller.kube import CRD_NAME, enclave_crd


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
    deadline = time.monotonic() + 60
    while True:
        conditions = ext.read_custom_resource_definition(CRD_NAME).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return CRD_NAME
        if time.monotonic() > deadline:
            pytest.fail("the Enclave CRD was not Established within 60 s")
        time.sleep(0.1)  # the poll interval; the deadline above bounds the wait
