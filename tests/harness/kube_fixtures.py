"""Pytest fixtures for the real Kubernetes control plane (see ``tests/harness/kube.py``).

- ``kube_control_plane`` (session): one etcd + kube-apiserver + kube-controller-manager
  for the whole run, started on first use and always stopped at the end.
- ``kube_api`` (session): an admin ``kubernetes.client.ApiClient``.
- ``kube_namespace`` (function): a fresh namespace per test, deleted afterwards.
- ``as_service_account`` (function): ``as_service_account(name, namespace=...)``
  creates the ServiceAccount when missing and returns a client acting as it.
- ``helm`` (function): real Helm (``tests/harness/helm.py``) bound to the admin
  kubeconfig and the test's namespace.

When the binaries are missing the session fixture raises, so every test that uses
it fails with the message "run `make setup`"; nothing is skipped.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.helm import Helm, open_helm
from tests.harness.kube import ControlPlane, ServiceAccountKubeconfig, start_control_plane

__all__ = [
    "ServiceAccountClient",
    "as_service_account",
    "helm",
    "kube_api",
    "kube_control_plane",
    "kube_namespace",
    "wait_for_service_account",
]


@pytest.fixture(scope="session")
def kube_control_plane() -> Iterator[ControlPlane]:
    plane = start_control_plane()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube_api(kube_control_plane: ControlPlane) -> Iterator[Any]:
    api_client = kube_control_plane.new_api_client()
    try:
        yield api_client
    finally:
        api_client.close()


def _namespace_name(node_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


def wait_for_service_account(api_client: Any, *, namespace: str, name: str = "default") -> None:
    """Poll until ServiceAccount ``namespace/name`` exists (made by the controller manager)."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account(name, namespace)
            return
        except client.ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.05)  # the poll interval; the deadline above bounds the wait


@pytest.fixture
def kube_namespace(request: pytest.FixtureRequest, kube_api: Any) -> Iterator[str]:
    """A new namespace with its ``default`` ServiceAccount in place; deleted after the test."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = _namespace_name(request.node.name)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        wait_for_service_account(kube_api, namespace=name)
        yield name
    finally:
        # The namespace controller finishes the deletion in the background.
        try:
            core.delete_namespace(name)
        except client.ApiException as e:
            if e.status != 404:
                raise


@dataclass(frozen=True, kw_only=True)
class ServiceAccountClient:
    """A ServiceAccount's kubeconfig and a ``kubernetes.client.ApiClient`` acting as it."""

    kubeconfig: ServiceAccountKubeconfig
    api_client: Any

    @property
    def path(self) -> Path:
        return self.kubeconfig.path


@pytest.fixture
def as_service_account(
    kube_control_plane: ControlPlane, kube_api: Any, kube_namespace: str
) -> Iterator[Callable[..., ServiceAccountClient]]:
    """``as_service_account(name, namespace=None)``: a client with exactly that SA's RBAC.

    The namespace defaults to the test's own ``kube_namespace``. The ServiceAccount is
    created when it does not exist yet; grant it permissions with Roles and
    RoleBindings in the test.
    """
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    opened: list[Any] = []

    def make(name: str, *, namespace: str | None = None) -> ServiceAccountClient:
        ns = namespace or kube_namespace
        try:
            core.create_namespaced_service_account(
                ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            )
        except client.ApiException as e:
            if e.status != 409:
                raise
        kubeconfig = kube_control_plane.service_account_kubeconfig(namespace=ns, name=name)
        api_client = kube_control_plane.new_api_client(kubeconfig=kubeconfig.path)
        opened.append(api_client)
        return ServiceAccountClient(kubeconfig=kubeconfig, api_client=api_client)

    try:
        yield make
    finally:
        for api_client in opened:
            api_client.close()


@pytest.fixture
def helm(kube_control_plane: ControlPlane, kube_namespace: str) -> Iterator[Helm]:
    """Real Helm (Helm v4's Go SDK) acting in the test's namespace as the cluster admin."""
    with open_helm(kubeconfig=kube_control_plane.kubeconfig, namespace=kube_namespace) as h:
        yield h
