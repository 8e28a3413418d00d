"""The local validator: the same schema and rules as admission, without a cluster.

The agreement with the API server itself is tested in
``tests/integration/controller/test_crd.py``; here, the validator alone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from controller.kube import (
    Approval,
    Dataset,
    Enclave,
    InvalidEnclaveError,
    Member,
    Workspace,
    enclave_crd,
    load_enclave,
    validate_enclave,
)
from controller.kube._schema import RULES, USERNAME_PATTERN
from controller.kube._spec import read_enclave_file
from tests.assets.controller import EXAMPLES, EXPECTED, INVALID, example
from tests.assets.controller import load_document as _doc


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_valid(path: Path) -> None:
    assert validate_enclave(_doc(path)) == ()


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_invalid_file_is_refused_naming_the_field(stem: str) -> None:
    problems = validate_enclave(_doc(INVALID / f"{stem}.yaml"))
    assert problems, stem
    assert problems[0].field == EXPECTED[stem]


def test_an_unknown_field_is_refused_not_ignored() -> None:
    doc = _doc(EXAMPLES[0])
    doc["spec"]["workspace"]["privileged"] = True
    problems = validate_enclave(doc)
    assert [(p.field, p.message) for p in problems] == [
        ("spec.workspace.privileged", "is not a known field")
    ]


def test_another_kind_is_refused() -> None:
    doc = _doc(EXAMPLES[0])
    doc["kind"] = "Pod"
    assert [p.field for p in validate_enclave(doc)] == ["kind"]


@pytest.mark.parametrize(
    "name",
    ["r.tanaka@company-a.example", "R.Tanaka@company-a.example", "a", "a" * 128, "a" * 129,
     ".dot", "k_sato+x@t-u.example", "bad name", "名前", ""],
)  # fmt: skip
def test_the_username_rule_is_the_portals_canonical_form(name: str) -> None:
    from auth._names import canonical_username

    assert bool(re.fullmatch(USERNAME_PATTERN, name)) == (canonical_username(name) == name)


def test_load_enclave_wraps_a_valid_file() -> None:
    enclave = read_enclave_file(example("nbdc-high"))
    assert enclave == Enclave(
        name="gut-microbiome-2026",
        tier="nbdc-high",
        display_name="Gut microbiome and lifestyle (joint study)",
        approval=Approval(
            ethics_review_id="IRB-2026-0142",
            data_use_agreement_id="DUA-2026-031",
            not_before=datetime(2026, 12, 1, tzinfo=UTC),
            not_after=datetime(2027, 11, 30, 23, 59, 59, tzinfo=UTC),
        ),
        members=(
            Member(user="r.tanaka@company-a.example", role="researcher"),
            Member(user="k.sato@tohoku.example", role="pi"),
        ),
        datasets=(
            Dataset(
                name="microbiome-16s",
                persistent_volume="ds-microbiome-16s-v3",
                mount_path="/data/microbiome-16s",
            ),
            Dataset(
                name="lifestyle-survey",
                persistent_volume="ds-lifestyle-survey-v1",
                mount_path="/data/lifestyle/survey",
            ),
        ),
        workspace=Workspace(
            image="registry.example/enclave/singleuser:1.0", cpu="2", memory="8Gi", storage="20Gi"
        ),
        access_networks=("192.0.2.0/24", "2001:db8:10::/48"),
    )


def test_load_enclave_error_is_one_sentence_naming_the_field() -> None:
    with pytest.raises(InvalidEnclaveError) as caught:
        load_enclave(_doc(INVALID / "unknown_tier.yaml"), source="x.yaml")
    assert str(caught.value) == (
        "x.yaml: spec.tier: must be one of nbdc-standard, nbdc-high, tommo-standard, tommo-strong."
    )


def test_a_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(InvalidEnclaveError, match=r"bad.yaml: \(file\): is not valid YAML"):
        read_enclave_file(bad)


def test_every_rule_is_in_the_crd_where_it_applies() -> None:
    crd = enclave_crd()
    root = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for rule in RULES:
        node = root
        for key in rule.at:
            node = node["items"] if key == "[]" else node["properties"][key]
        assert rule.cel in [v["rule"] for v in node["x-kubernetes-validations"]]


def test_the_crd_lists_the_catalogs_tiers() -> None:
    from policies import TIER_IDS

    spec = enclave_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["tier"]["enum"] == list(TIER_IDS)


def test_patterns_are_re2_safe() -> None:
    """No look-around or back-references: the API server's RE2 and Python must agree."""
    crd = yaml.safe_dump(enclave_crd())
    for pattern in re.findall(r"pattern: (.+)", crd):
        assert not re.search(r"\(\?[=!<]|\\[1-9]", pattern), pattern
