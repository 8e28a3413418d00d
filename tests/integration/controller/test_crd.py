"""The Enclave CRD on the real API server: every invalid spec refused naming its field.

Each file in ``tests/assets/controller/invalid/`` is sent to the API server and to
the local validator; both must refuse it, naming the field listed in
``expected.yaml``. The examples (one per tier) must be admitted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from controller.kube import GROUP, VERSION, validate_enclave
from tests.assets.controller import EXAMPLES, EXPECTED, INVALID, example
from tests.assets.controller import load_document as _load

pytestmark = pytest.mark.kube


@pytest.fixture
def custom(kube_api: Any, enclave_crd_installed: str) -> Iterator[client.CustomObjectsApi]:
    api = client.CustomObjectsApi(kube_api)
    created: list[str] = []
    original = api.create_cluster_custom_object

    def create(body: dict[str, Any]) -> Any:
        out = original(GROUP, VERSION, "enclaves", body)
        created.append(body["metadata"]["name"])
        return out

    api.create = create  # type: ignore[attr-defined]
    yield api
    for name in created:
        api.delete_cluster_custom_object(GROUP, VERSION, "enclaves", name)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_tier_example_is_admitted(custom: Any, path: Path) -> None:
    doc = _load(path)
    assert validate_enclave(doc) == ()
    stored = custom.create(doc)
    assert stored["spec"] == doc["spec"]


def test_there_is_one_example_per_tier() -> None:
    from policies import TIER_IDS

    assert sorted(_load(p)["spec"]["tier"] for p in EXAMPLES) == sorted(TIER_IDS)


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_invalid_spec_is_refused_at_admission_naming_the_field(custom: Any, stem: str) -> None:
    doc = _load(INVALID / f"{stem}.yaml")
    field = EXPECTED[stem]
    with pytest.raises(client.ApiException) as caught:
        custom.create(doc)
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert field in message, message
    # The local validator refuses the same file naming the same field first.
    local = validate_enclave(doc)
    assert local
    assert local[0].field == field


def test_every_asset_file_is_listed_in_expected() -> None:
    stems = {p.stem for p in INVALID.glob("*.yaml")} - {"expected"}
    assert stems == set(EXPECTED)


def test_status_cannot_be_written_through_the_spec(custom: Any) -> None:
    doc = _load(EXAMPLES[0])
    doc["status"] = {"phase": "Ready"}
    stored = custom.create(doc)
    assert "status" not in stored


def test_printer_columns_and_short_name(kube_api: Any, custom: Any) -> None:
    doc = _load(example("tommo-strong"))
    custom.create(doc)
    response = kube_api.call_api(
        "GET",
        f"{kube_api.configuration.host}/apis/{GROUP}/{VERSION}/enclaves/{doc['metadata']['name']}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
    )
    response.read()
    table = json.loads(response.data)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Tier",
        "Phase",
        "Expires",
        "Age",
    ]
    assert table["rows"][0]["cells"][:3] == [doc["metadata"]["name"], "tommo-strong", None]
    resources = client.CustomObjectsApi(kube_api).get_api_resources(GROUP, VERSION)
    enclaves = next(r for r in resources.resources if r.name == "enclaves")
    assert enclaves.short_names == ["enc"]
    assert enclaves.namespaced is False
