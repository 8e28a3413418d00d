"""What ``enclave render`` prints is admitted by the real API server, under PSA restricted.

For each example (one per tier) the rendered objects are server-side applied as the
controller will apply them, owned by a real Enclave; then the hub's and the proxy's
pod templates and the single-user pod the hub will create are created for real in
the enclave's namespace, where Pod Security ``restricted`` is enforced.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from controller.kube import GROUP, VERSION, HubConfig, RenderSettings, load_enclave, render_enclave
from controller.kube._apply import apply_objects, sync_objects
from controller.kube._objects import (
    Owner,
    make_singleuser_claim,
    make_singleuser_pod,
    namespace_name,
)
from policies import load_catalog
from tests.assets.controller import EXAMPLES, load_document
from tests.integration.controller.helpers import counted_writes, wait_for

pytestmark = pytest.mark.kube

SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))
HUB_CONFIG = HubConfig(files=(("jupyterhub_config.py", "c = get_config()  # noqa\n"),))


@pytest.fixture
def owned_enclave(
    request: pytest.FixtureRequest, kube_api: Any, enclave_crd_installed: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """The example's Enclave, created under a fresh name; deleted with its namespace after."""
    doc = yaml.safe_load(Path(request.param).read_text("utf-8"))
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-{doc['spec']['tier']}"
    custom = client.CustomObjectsApi(kube_api)
    stored = custom.create_cluster_custom_object(GROUP, VERSION, "enclaves", doc)
    try:
        yield doc, stored["metadata"]["uid"]
    finally:
        core = client.CoreV1Api(kube_api)
        try:
            core.delete_namespace(f"enclave-{doc['metadata']['name']}")
        except client.ApiException as e:
            if e.status != 404:
                raise
        custom.delete_cluster_custom_object(GROUP, VERSION, "enclaves", doc["metadata"]["name"])


@pytest.mark.parametrize("owned_enclave", EXAMPLES, ids=[p.stem for p in EXAMPLES], indirect=True)
def test_rendered_objects_are_admitted_and_pods_pass_psa_restricted(
    kube_api: Any, owned_enclave: tuple[dict[str, Any], str]
) -> None:
    doc, uid = owned_enclave
    enclave = load_enclave(doc)
    tier = load_catalog().get(enclave.tier)
    objects = render_enclave(
        enclave=enclave, tier=tier, settings=SETTINGS, hub_config=HUB_CONFIG, owner_uid=uid
    )
    stored = apply_objects(api_client=kube_api, objects=objects)
    assert [(o["kind"], o["metadata"]["name"]) for o in stored] == [
        (o["kind"], o["metadata"]["name"]) for o in objects
    ]
    assert all(o["metadata"]["ownerReferences"][0]["uid"] == uid for o in stored)

    # The Deployments' pods are created for real by the ReplicaSet controller, where PSA
    # restricted is enforced (a violation would leave the ReplicaSet with FailedCreate).
    ns = namespace_name(enclave)
    core = client.CoreV1Api(kube_api)
    for component in ("hub", "proxy"):
        selector = (
            f"app.kubernetes.io/instance={enclave.name},app.kubernetes.io/component={component}"
        )
        wait_for(
            f"the {component} pod",
            lambda selector=selector: bool(
                core.list_namespaced_pod(ns, label_selector=selector).items
            ),
        )
    owner = Owner(name=enclave.name, uid=uid)
    user = enclave.members[0].user
    core.create_namespaced_persistent_volume_claim(ns, make_singleuser_claim(enclave, user, owner))
    pod = core.create_namespaced_pod(
        ns, make_singleuser_pod(enclave, tier, SETTINGS, owner, user=user)
    )
    assert pod.spec.automount_service_account_token is False
    assert all(
        m.read_only
        for m in pod.spec.containers[0].volume_mounts
        if m.mount_path.startswith("/data/")
    )


def test_a_privileged_pod_is_refused_in_the_rendered_namespace(
    kube_api: Any, enclave_crd_installed: str
) -> None:
    """The namespace really enforces restricted: the check above could not pass by accident."""
    doc = yaml.safe_load(EXAMPLES[0].read_text("utf-8"))
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-psa"
    enclave = load_enclave(doc)
    tier = load_catalog().get(enclave.tier)
    objects = render_enclave(enclave=enclave, tier=tier, settings=SETTINGS, hub_config=None)
    core = client.CoreV1Api(kube_api)
    apply_objects(api_client=kube_api, objects=objects)
    ns = namespace_name(enclave)
    try:
        owner = Owner(name=enclave.name)
        pod = make_singleuser_pod(enclave, tier, SETTINGS, owner, user="x")
        pod["spec"]["containers"][0]["securityContext"] = {"privileged": True}
        with pytest.raises(client.ApiException) as caught:
            core.create_namespaced_pod(ns, pod)
        assert caught.value.status == 403
        message = json.loads(caught.value.body)["message"]
        assert 'violates PodSecurity "restricted:latest"' in message
    finally:
        core.delete_namespace(ns)


def test_a_settled_enclave_resyncs_with_zero_writes_and_drift_is_repaired(
    kube_control_plane: Any, enclave_crd_installed: str
) -> None:
    doc = load_document(EXAMPLES[0])
    doc["metadata"]["name"] = f"t{secrets.token_hex(3)}-sync"
    enclave = load_enclave(doc)
    objects = render_enclave(
        enclave=enclave,
        tier=load_catalog().get(enclave.tier),
        settings=SETTINGS,
        hub_config=HUB_CONFIG,
    )
    api_client = kube_control_plane.new_api_client()
    ns = namespace_name(enclave)
    try:
        first = sync_objects(api_client=api_client, objects=objects)
        assert len(first.written) == len(objects)
        with counted_writes(api_client) as writes:
            again = sync_objects(api_client=api_client, objects=objects)
        assert writes == []
        assert again.written == ()

        networking = client.NetworkingV1Api(api_client)
        networking.delete_namespaced_network_policy("default-deny", ns)
        networking.patch_namespaced_network_policy(
            "singleuser",
            ns,
            {"spec": {"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}},
        )
        repaired = sync_objects(api_client=api_client, objects=objects)
        assert repaired.written == (
            f"NetworkPolicy {ns}/default-deny",
            f"NetworkPolicy {ns}/singleuser",
        )
        live = networking.read_namespaced_network_policy("singleuser", ns)
        assert [r.to[0].ip_block for r in live.spec.egress] == [None, None]
    finally:
        client.CoreV1Api(api_client).delete_namespace(ns)
        api_client.close()
