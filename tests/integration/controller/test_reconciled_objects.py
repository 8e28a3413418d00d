"""#16: for one Enclave per tier, the controller creates exactly what ``enclave render`` prints.

The reconciler runs (round by round, as a ServiceAccount bound to exactly
``controller/kube/rbac.yaml``) on each example; then every object carrying the
enclave's labels in the cluster is read back and compared with the rendering (for the
same settings and the Enclave's uid): the same objects, none more, none fewer, and each
live one holds every field and value rendered (what the API server adds, status and
server-set metadata, is not compared). PSA admission of the pods is
``test_render_apply.py``'s.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from controller.kube import GROUP, VERSION, RenderSettings, load_enclave, render_enclave
from controller.kube._apply import _contains
from controller.kube.operator import OperatorConfig, reconcile_latest
from policies import load_catalog
from tests.assets.controller import EXAMPLES, load_document
from tests.harness.kube_fixtures import ServiceAccountClient
from tests.integration.controller.helpers import delete_enclave, in_force

pytestmark = pytest.mark.kube

SETTINGS = RenderSettings(api_server_cidrs=("10.0.0.1/32",))


def _labelled(api: Any, rendered: list[dict[str, Any]], enclave: str) -> dict[tuple[str, str], Any]:
    """Every live object of the rendered kinds that carries the enclave's label."""
    dynamic = DynamicClient(api)
    found: dict[tuple[str, str], Any] = {}
    for api_version, kind in sorted({(o["apiVersion"], o["kind"]) for o in rendered}):
        resource = dynamic.resources.get(api_version=api_version, kind=kind)
        items = resource.get(label_selector=f"enclave.dev/enclave={enclave}").items
        for item in items:
            found[(kind, item.metadata.name)] = item.to_dict()
    return found


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_controller_creates_exactly_what_render_prints(
    kube_api: Any,
    controller_identity: ServiceAccountClient,
    enclave_crd_installed: str,
    path: Path,
) -> None:
    name = f"t{secrets.token_hex(3)}-exact"
    custom = client.CustomObjectsApi(kube_api)
    stored = custom.create_cluster_custom_object(
        GROUP, VERSION, "enclaves", in_force(load_document(path), name=name)
    )
    config = OperatorConfig(
        api_client=controller_identity.api_client, catalog=load_catalog(), settings=SETTINGS
    )
    try:
        reconcile_latest(config, name)
        enclave = load_enclave(stored)
        rendered = render_enclave(
            enclave=enclave,
            tier=load_catalog().get(enclave.tier),
            settings=SETTINGS,
            hub_config=None,
            owner_uid=stored["metadata"]["uid"],
        )

        live = _labelled(kube_api, rendered, name)

        assert sorted(live) == sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
        differing = [
            f"{o['kind']} {o['metadata']['name']}"
            for o in rendered
            if not _contains(live[(o["kind"], o["metadata"]["name"])], o)
        ]
        assert differing == []
    finally:
        try:
            client.CoreV1Api(kube_api).delete_namespace(f"enclave-{name}")
        except client.ApiException as e:
            if e.status != 404:
                raise
        delete_enclave(kube_api, name)
