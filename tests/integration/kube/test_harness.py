"""The harness itself: missing binaries fail loudly, failed starts clean up, the
ServiceAccount kubeconfig really authenticates as that ServiceAccount, and the
``python -m tests.harness.kube`` command from docs/testing.md works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.harness.kube import (
    K8S_VERSION,
    KubeBinaries,
    KubeHarnessError,
    find_binaries,
    start_control_plane,
)
from tests.harness.kube_fixtures import ServiceAccountClient

pytestmark = pytest.mark.kube

REPO = Path(__file__).resolve().parents[3]


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_missing_binaries_fail_with_a_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ENCLAVE_CACHE", str(tmp_path))
    with pytest.raises(KubeHarnessError) as caught:
        find_binaries()
    message = str(caught.value)
    assert f"Kubernetes v{K8S_VERSION} test binaries" in message
    assert "etcd, kube-apiserver, kube-controller-manager" in message
    assert "run `make setup`" in message


def test_kube_tests_fail_not_skip_without_binaries(tmp_path: Path):
    """A kube test run where `make setup` never built the binaries errors out loudly."""
    test_file = tmp_path / "test_needs_kube.py"
    test_file.write_text("def test_it(kube_namespace):\n    assert kube_namespace\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {**os.environ, "ENCLAVE_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-p", "tests.harness.kube_fixtures", "-p", "no:cacheprovider"),
            *("-q", "-rA", "-c", str(tmp_path / "pytest.ini"), str(test_file)),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "skipped" not in result.stdout
    assert "KubeHarnessError: the Kubernetes v" in result.stdout
    assert "run `make setup` to build them" in result.stdout


def test_manual_entry_point_without_binaries_says_what_to_do(tmp_path: Path):
    env = {**os.environ, "ENCLAVE_CACHE": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.harness.kube", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: the Kubernetes v")
    assert "run `make setup`" in result.stderr


def test_a_failed_start_stops_what_it_started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    real = find_binaries()
    # etcd starts for real; the "API server" exits at once.
    broken = KubeBinaries(
        etcd=real.etcd,
        kube_apiserver=Path("/bin/false"),
        kube_controller_manager=real.kube_controller_manager,
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(KubeHarnessError, match="kube-apiserver exited with status 1 during start"):
        start_control_plane(binaries=broken, timeout=60)
    assert list(tmp_path.iterdir()) == []
    assert _processes_mentioning(str(tmp_path)) == []


def test_service_account_kubeconfig_authenticates_as_it(
    kube_namespace: str, as_service_account: Callable[..., ServiceAccountClient]
):
    robot = as_service_account("robot")
    assert robot.kubeconfig.path.stat().st_mode & 0o077 == 0
    review = client.AuthenticationV1Api(robot.api_client).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == f"system:serviceaccount:{kube_namespace}:robot"
    assert f"system:serviceaccounts:{kube_namespace}" in review.status.user_info.groups


def test_admin_kubeconfig_is_the_cluster_admin(kube_api: Any):
    review = client.AuthenticationV1Api(kube_api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == "enclave-test-admin"
    assert "system:masters" in review.status.user_info.groups
    version = client.VersionApi(kube_api).get_code()
    assert version.git_version == f"v{K8S_VERSION}"


def test_manual_entry_point_starts_and_stops(tmp_path: Path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tests.harness.kube", "--once"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Kubernetes v{K8S_VERSION} control plane ready in ")
    server = next(line.split()[-1] for line in lines if line.startswith("API server:"))
    kubeconfig = next(line for line in lines if line.startswith("export KUBECONFIG="))
    assert kubeconfig.endswith("/kubeconfig")
    # Stopped and cleaned up: nothing listens on its port, its files are gone.
    port = int(server.rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert list(tmp_path.iterdir()) == []
    assert _processes_mentioning(str(tmp_path)) == []
