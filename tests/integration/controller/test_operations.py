"""Operations against the real control plane: two replicas, one Lease; metrics; health.

Both replicas are ``enclave controller run --kube`` processes acting as the
ServiceAccount bound to exactly ``controller/kube/rbac.yaml``.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from controller.kube import GROUP, VERSION
from tests.assets.controller import example, load_document
from tests.harness.audit_service import AuditEnv, ServiceProcess, free_port
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.controller.helpers import (
    condition,
    controller_argv,
    get_enclave,
    in_force,
    wait_for,
)

pytestmark = pytest.mark.kube


class Replica:
    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        self.log = log
        self.port = port
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            [*argv, "--health-port", str(port)], stdout=subprocess.DEVNULL, stderr=self._out
        )

    def said(self, text: str) -> bool:
        return text in self.log.read_text("utf-8", errors="replace")

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        except httpx.HTTPError:
            return None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._out.close()
        return code


def _holder(kube_api: Any, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(
            "enclave-controller", namespace
        )
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return lease.spec.holder_identity


def test_two_replicas_never_both_reconcile_and_the_standby_takes_over(
    kube_api: Any,
    kube_namespace: str,
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    audit_env: AuditEnv,
    audit_service: ServiceProcess,
    tmp_path: Path,
) -> None:
    def argv(which: str) -> list[str]:
        workdir = tmp_path / which
        workdir.mkdir()
        base = controller_argv(
            kubeconfig=controller_identity.path,
            audit_url=audit_service.url,
            token=audit_env.tokens["controller"],
            workdir=workdir,
        )
        return [*base, "--lease-namespace", kube_namespace]

    a = Replica(argv("a"), tmp_path / "a.log", free_port())
    b: Replica | None = None
    name = f"t{secrets.token_hex(3)}-le"
    custom = client.CustomObjectsApi(kube_api)
    try:
        wait_for("replica a to hold the Lease", lambda: a.said("holding the Lease"))
        holder_a = _holder(kube_api, kube_namespace)
        assert holder_a is not None
        assert f"-{a.process.pid}-" in holder_a
        b = Replica(argv("b"), tmp_path / "b.log", free_port())
        wait_for("replica b to wait for the Lease", lambda: b is not None and b.said("waiting"))
        custom.create_cluster_custom_object(
            GROUP,
            VERSION,
            "enclaves",
            in_force(load_document(example("tommo-standard")), name=name),
        )
        wait_for(
            "the leader to report isolation",
            lambda: (
                condition(get_enclave(kube_api, name), "NetworkIsolation").get("status") == "True"
            ),
        )
        assert not b.said("holding the Lease")
        assert _holder(kube_api, kube_namespace) == holder_a

        # health and metrics, on the leader and on the standby
        for replica in (a, b):
            wait_for("the health endpoint", lambda r=replica: r.get("/healthz") is not None)
            health = replica.get("/healthz")
            assert health is not None
            assert health.status_code == 200
        metrics_a = a.get("/metrics")
        metrics_b = b.get("/metrics")
        assert metrics_a is not None
        assert metrics_b is not None
        assert "enclave_controller_reconcile_duration_seconds_count" in metrics_a.text
        assert 'enclave_controller_enclaves_entries{phase="Provisioning"} 1.0' in metrics_a.text
        assert "enclave_controller_leader_info 1.0" in metrics_a.text
        assert "enclave_controller_leader_info 0.0" in metrics_b.text
        assert "enclave_controller_drift_repairs_total" in metrics_a.text

        # the leader stops: it gives the Lease up and the standby takes over
        assert a.stop() == 0, a.log.read_text()[-2000:]
        wait_for("replica b to hold the Lease", lambda: b is not None and b.said("holding the"))
        holder_b = _holder(kube_api, kube_namespace)
        assert holder_b is not None
        assert f"-{b.process.pid}-" in holder_b
        custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)
        wait_for("the Enclave to go", lambda: get_enclave(kube_api, name) is None, timeout=90)
    finally:
        a.stop()
        if b is not None:
            assert b.stop() == 0, b.log.read_text()[-2000:]
