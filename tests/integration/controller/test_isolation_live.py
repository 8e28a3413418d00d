"""``enclave isolation NAME`` reads the live cluster: it matches the tier until it is widened."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from controller.cli import cli
from controller.kube import GROUP, VERSION, RenderSettings, load_enclave, render_enclave
from controller.kube._apply import apply_objects
from controller.kube._objects import namespace_name
from policies import load_catalog
from tests.assets.controller import example
from tests.harness.kube import ControlPlane

pytestmark = pytest.mark.kube


@pytest.fixture
def provisioned(kube_api: Any, enclave_crd_installed: str) -> Iterator[str]:
    """The tommo-strong example under a fresh name, with everything render prints applied."""
    doc = yaml.safe_load(example("tommo-strong").read_text())
    name = f"t{secrets.token_hex(3)}-iso"
    doc["metadata"]["name"] = name
    custom = client.CustomObjectsApi(kube_api)
    custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    enclave = load_enclave(doc)
    objects = render_enclave(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=RenderSettings(),
        hub_config=None,
    )
    apply_objects(api_client=kube_api, objects=objects)
    try:
        yield name
    finally:
        client.CoreV1Api(kube_api).delete_namespace(namespace_name(enclave))
        custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)


def _isolation(plane: ControlPlane, name: str, *extra: str) -> Any:
    return CliRunner().invoke(
        cli, ["isolation", name, "--kubeconfig", str(plane.kubeconfig), *extra]
    )


def test_isolation_of_a_provisioned_enclave_matches_its_tier(
    kube_control_plane: ControlPlane, provisioned: str
) -> None:
    result = _isolation(kube_control_plane, provisioned)
    assert result.exit_code == 0, result.output
    assert "Not written by the controller: none" in result.stdout
    assert "cloud metadata 169.254.169.254: REACHABLE" not in result.stdout
    assert "  singleuser -> hub on TCP/8081" in result.stdout
    assert result.stdout.rstrip().endswith("Matches what tier tommo-strong allows.")


def test_a_policy_added_by_someone_else_is_reported(
    kube_api: Any, kube_control_plane: ControlPlane, provisioned: str
) -> None:
    ns = f"enclave-{provisioned}"
    client.NetworkingV1Api(kube_api).create_namespaced_network_policy(
        ns,
        {
            "metadata": {"name": "debug-egress"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
            },
        },
    )
    result = _isolation(kube_control_plane, provisioned, "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["foreign_policies"] == ["debug-egress"]
    assert out["matches_tier"] is False
    assert "allows singleuser egress network 0.0.0.0/0 on TCP/any" in out["differences"]


def test_deleting_the_default_deny_is_reported(
    kube_api: Any, kube_control_plane: ControlPlane, provisioned: str
) -> None:
    ns = f"enclave-{provisioned}"
    client.NetworkingV1Api(kube_api).delete_namespaced_network_policy("default-deny", ns)
    result = _isolation(kube_control_plane, provisioned)
    assert result.exit_code == 1
    # the pods no other policy selects are open again
    assert "other pods\n  egress: NOT ISOLATED" in result.stdout
    assert "cloud metadata 169.254.169.254: REACHABLE" in result.stdout


def test_an_unknown_enclave_is_exit_2(
    kube_control_plane: ControlPlane, enclave_crd_installed: str
) -> None:
    result = _isolation(kube_control_plane, "no-such-enclave")
    assert result.exit_code == 2
    assert result.stderr == (
        "enclave: Enclave no-such-enclave: metadata.name: no such Enclave in the cluster.\n"
    )
