"""The lifecycle against the real control plane: suspension, quarantine, the end of use.

The reconciler runs as a ServiceAccount bound to exactly ``controller/kube/rbac.yaml``;
the audit service is the real one (stopped to make an outage). The controller's clock
is moved past ``notAfter`` instead of waiting for it.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.kube._lifecycle import AuditRecorder
from tests.harness.audit_service import AuditEnv, ServiceProcess
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.controller.helpers import (
    condition,
    create_enclave,
    delete_enclave,
    get_enclave,
    operator_config,
    phase,
    recorded,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.kube

ENCLAVE = Path(sys.executable).parent / "enclave"


def _policies(kube_api: Any, ns: str) -> set[str]:
    items = client.NetworkingV1Api(kube_api).list_namespaced_network_policy(ns).items
    return {p.metadata.name for p in items}


def _ingresses(kube_api: Any, ns: str) -> set[str]:
    items = client.NetworkingV1Api(kube_api).list_namespaced_ingress(ns).items
    return {i.metadata.name for i in items}


def _replicas(kube_api: Any, ns: str) -> dict[str, int]:
    apps = client.AppsV1Api(kube_api)
    return {d: apps.read_namespaced_deployment(d, ns).spec.replicas for d in ("hub", "proxy")}


def _quarantine(name: str, kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENCLAVE), "quarantine", name, *args, "--kubeconfig", kubeconfig],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_enclave_whose_approval_ran_out_while_the_controller_was_stopped_is_suspended_on_start(
    kube_api: Any,
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    audit_recorder: AuditRecorder,
) -> None:
    name = create_enclave(kube_api, tier="nbdc-standard", suffix="sus")
    ns = f"enclave-{name}"
    try:
        with running_operator(operator_config(controller_identity, audit=audit_recorder)):
            wait_for("provisioning", lambda: phase(kube_api, name) == "Provisioning")
        assert _ingresses(kube_api, ns)
        assert _replicas(kube_api, ns) == {"hub": 1, "proxy": 1}
        # The controller is stopped; its approval (one year) has run out when it starts
        # again. The timer interval is far longer than the wait below (and its first
        # round comes one interval after the start), so only the reconciliation at
        # start (kopf's resume handler) can see it.
        later = datetime.now(UTC) + timedelta(days=366)
        config = operator_config(
            controller_identity,
            audit=audit_recorder,
            resync_interval_s=600.0,
            clock=lambda: later,
        )
        assert phase(kube_api, name) == "Provisioning"
        with running_operator(config):
            wait_for("the phase Suspended", lambda: phase(kube_api, name) == "Suspended")
            obj = get_enclave(kube_api, name)
            assert condition(obj, "Approval")["reason"] == "Expired"
            assert _replicas(kube_api, ns) == {"hub": 0, "proxy": 0}
            assert _ingresses(kube_api, ns) == set()
            sessions = condition(obj, "Sessions")
            assert (sessions["status"], sessions["reason"]) == ("False", "PortalNotConfigured")
            assert condition(obj, "Workspace")["reason"] == "Stopped"
            # suspension is not quarantine: the tier's allow policies stay
            assert _policies(kube_api, ns) == {"default-deny", "hub", "proxy", "singleuser"}
    finally:
        with running_operator(operator_config(controller_identity, audit=audit_recorder)):
            delete_enclave(kube_api, name)
            wait_for("the Enclave to go", lambda: get_enclave(kube_api, name) is None, timeout=90)


def test_quarantine_denies_all_traffic_stops_the_hub_and_records_who(
    kube_api: Any,
    kube_control_plane: Any,
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    audit_recorder: AuditRecorder,
) -> None:
    name = create_enclave(kube_api, tier="tommo-strong", suffix="q")
    ns = f"enclave-{name}"
    kubeconfig = str(kube_control_plane.kubeconfig)
    with running_operator(operator_config(controller_identity, audit=audit_recorder)):
        try:
            wait_for(
                "isolation",
                lambda: (
                    condition(get_enclave(kube_api, name), "NetworkIsolation").get("status")
                    == "True"
                ),
            )
            blank = _quarantine(name, kubeconfig, "--reason", "  ")
            assert blank.returncode == 2, blank.stderr
            assert "--reason" in blank.stderr
            assert "Traceback" not in blank.stderr
            assert (get_enclave(kube_api, name) or {})["spec"].get("quarantine") is None

            done = _quarantine(name, kubeconfig, "--reason", "suspected exfiltration")
            assert done.returncode == 0, done.stderr
            wait_for("the phase Quarantined", lambda: phase(kube_api, name) == "Quarantined")
            obj = get_enclave(kube_api, name)
            q = condition(obj, "Quarantine")
            assert q["status"] == "True"
            assert "suspected exfiltration" in q["message"]
            assert obj is not None
            assert obj["spec"]["quarantine"]["by"] in q["message"]
            assert obj["spec"]["quarantine"]["by"] != "unknown"
            # only the default deny is left: no pod can send or receive anything
            assert _policies(kube_api, ns) == {"default-deny"}
            assert _ingresses(kube_api, ns) == set()
            assert _replicas(kube_api, ns) == {"hub": 0, "proxy": 0}
            assert condition(obj, "NetworkIsolation")["status"] == "True"

            lifted = _quarantine(
                name, kubeconfig, "--lift", "--reason", "investigated: false alarm"
            )
            assert lifted.returncode == 0, lifted.stderr
            wait_for("the phase Provisioning", lambda: phase(kube_api, name) == "Provisioning")
            wait_for(
                "the allow policies back",
                lambda: _policies(kube_api, ns) == {"default-deny", "hub", "proxy", "singleuser"},
            )
            lift = condition(get_enclave(kube_api, name), "Quarantine")
            assert (lift["status"], lift["reason"]) == ("False", "Lifted")
            assert "false alarm" in lift["message"]
            assert _replicas(kube_api, ns) == {"hub": 1, "proxy": 1}
        finally:
            delete_enclave(kube_api, name)
            wait_for("the Enclave to go", lambda: get_enclave(kube_api, name) is None, timeout=90)


def test_deleting_an_enclave_while_the_audit_service_is_down_waits_and_says_why(
    kube_api: Any,
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    audit_env: AuditEnv,
    audit_service: ServiceProcess,
    audit_recorder: AuditRecorder,
) -> None:
    name = create_enclave(kube_api, tier="nbdc-high", suffix="del")
    ns = f"enclave-{name}"
    with running_operator(operator_config(controller_identity, audit=audit_recorder)):
        wait_for("provisioning", lambda: phase(kube_api, name) == "Provisioning")
        claims = client.CoreV1Api(kube_api).list_namespaced_persistent_volume_claim(ns).items
        assert claims, "the enclave has volumes to destroy"
        audit_service.stop()
        delete_enclave(kube_api, name)
        wait_for(
            "EndOfUse AuditUnavailable",
            lambda: (
                condition(get_enclave(kube_api, name), "EndOfUse").get("reason")
                == "AuditUnavailable"
            ),
        )
        obj = get_enclave(kube_api, name)
        assert obj is not None, "the finalizer must hold the Enclave"
        assert phase(kube_api, name) == "Terminating"
        # the volumes went first; the namespace waits for the record
        assert client.CoreV1Api(kube_api).list_namespaced_persistent_volume_claim(ns).items == []
        client.CoreV1Api(kube_api).read_namespace(ns)
        assert not recorded(audit_env, "enclave.end_of_use")

        audit_service.start()
        wait_for("the Enclave to go", lambda: get_enclave(kube_api, name) is None, timeout=90)
    assert recorded(audit_env, "enclave.end_of_use")
    assert recorded(audit_env, name)
    with pytest.raises(client.ApiException) as caught:
        client.CoreV1Api(kube_api).read_namespace(ns)
    assert caught.value.status == 404
