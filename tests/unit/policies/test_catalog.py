"""The built-in catalog: four tiers, every control cited, the matrix of TIERS.md."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from policies import (
    CONTROL_GROUPS,
    SOURCES,
    TIER_IDS,
    CatalogError,
    ExportContent,
    PodSecurityLevel,
    UnknownTierError,
    load_catalog,
)
from policies._model import Control, strictness_of

CATALOG_DIR = Path(__file__).parents[3] / "policies" / "catalog"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_the_four_tiers_in_order(catalog):
    assert [t.id for t in catalog] == list(TIER_IDS)


def test_every_control_of_every_tier_cites_a_known_source(catalog):
    for tier in catalog:
        groups = dict(tier.controls())
        assert set(groups) == set(CONTROL_GROUPS)
        for group, control in groups.items():
            assert control.sources, f"{tier.id}.{group} cites nothing"
            for citation in control.sources:
                assert citation.split(" ")[0] in SOURCES, f"{tier.id}.{group}: {citation}"
            assert control.note, f"{tier.id}.{group} has no plain-language note"


def test_every_setting_says_which_way_is_stricter_and_what_it_means():
    for model in CONTROL_GROUPS.values():
        for name, info in model.model_fields.items():
            if name in Control.model_fields:
                continue
            assert strictness_of(model, name) is not None, f"{model.__name__}.{name}"
            assert info.description, f"{model.__name__}.{name} is undocumented"


@pytest.mark.parametrize("group", sorted(CONTROL_GROUPS))
def test_a_control_without_citation_is_refused(tmp_path, group):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    path = tmp_path / "nbdc-high.yaml"
    data = yaml.safe_load(path.read_text())
    data[group]["sources"] = []
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.path == f"{group}.sources"
    assert str(tmp_path / "nbdc-high.yaml") in str(e.value)


def test_a_citation_of_an_unknown_source_is_refused(tmp_path):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    path = tmp_path / "tommo-strong.yaml"
    data = yaml.safe_load(path.read_text())
    data["terminals"]["sources"] = ["My blog post"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"terminals\.sources.*must start with one of"):
        load_catalog(catalog_dir=tmp_path)


@pytest.mark.parametrize(
    ("edit", "path", "problem"),
    [
        (lambda d: d["session"].update(idle_timeout_s="900"), "session.idle_timeout_s", "integer"),
        (lambda d: d["egress"].update(dns="no"), "egress.dns", "boolean"),
        (lambda d: d["egress"].update(smtp=False), "egress.smtp", "unknown key"),
        (lambda d: d.pop("incident"), "incident", "missing key"),
        (
            lambda d: d["throttle"].update(max_consecutive_failures=101),
            "throttle.max_consecutive_failures",
            "less than or equal to 100",
        ),
    ],
    ids=["string-for-int", "string-for-bool", "unknown-key", "missing-group", "out-of-range"],
)
def test_malformed_catalog_files_name_file_path_and_problem(tmp_path, edit, path, problem):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    target = tmp_path / "nbdc-standard.yaml"
    data = yaml.safe_load(target.read_text())
    edit(data)
    target.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.file == str(target)
    assert e.value.path == path
    assert problem in e.value.problem
    assert "\n" not in str(e.value)


def test_an_extra_tier_file_is_an_unknown_tier(tmp_path):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    shutil.copy(tmp_path / "nbdc-high.yaml", tmp_path / "nbdc-ultra.yaml")
    with pytest.raises(CatalogError, match="unknown tier 'nbdc-ultra'"):
        load_catalog(catalog_dir=tmp_path)


def test_a_replacement_catalog_may_not_loosen_the_builtin_one(tmp_path):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    target = tmp_path / "tommo-strong.yaml"
    data = yaml.safe_load(target.read_text())
    data["egress"]["dns"] = True
    target.write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"egress\.dns: True would loosen the control"):
        load_catalog(catalog_dir=tmp_path)


def test_unknown_tier_lookup(catalog):
    with pytest.raises(
        UnknownTierError, match="unknown tier 'nbdc-ultra'; known tiers: nbdc-standard"
    ):
        catalog.get("nbdc-ultra")


# The control matrix of TIERS.md, row by row, as the catalog must state it.
MATRIX = {
    # (group, setting): values for nbdc-standard, nbdc-high, tommo-standard, tommo-strong
    ("isolation", "dedicated_namespace"): (True, True, True, True),
    ("isolation", "cross_project_paths"): (False, False, False, False),
    ("datasets", "read_only"): (True, True, True, True),
    ("login", "min_categories"): (2, 2, 2, 2),
    ("login", "require_phishing_resistant"): (False, True, False, True),
    ("login", "require_biometric"): (False, False, False, True),
    ("login", "require_device_bound"): (False, False, False, True),
    ("login", "aal"): (2, 2, 2, 3),
    ("session", "idle_timeout_s"): (900, 900, 900, 900),
    ("session", "max_session_s"): (43200, 43200, 43200, 43200),
    ("throttle", "max_consecutive_failures"): (100, 100, 100, 100),
    ("throttle", "backoff_initial_s"): (30, 30, 30, 30),
    ("network", "source_allowlist_required"): (False, True, False, True),
    ("egress", "internet"): (False, False, False, False),
    ("egress", "hub_api"): (True, True, True, True),
    ("egress", "audit_intake"): (True, True, True, True),
    ("egress", "dns"): (True, False, True, False),
    ("egress", "cloud_metadata"): (False, False, False, False),
    ("browser_download", "allowed"): (False, False, False, False),
    ("export", "content"): (
        ExportContent.RESULTS,
        ExportContent.RESULTS,
        ExportContent.DATA_OR_RESULTS,
        ExportContent.RESULTS,
    ),
    ("export", "reviewers"): (1, 1, 1, 2),
    ("export", "security_committee"): (False, False, True, False),
    ("export", "retained_copy"): (False, False, True, True),
    ("export", "dataset_files"): (False, False, True, False),
    ("import", "malware_scan"): (True, True, True, True),
    ("import", "reviewer_required"): (False, True, False, True),
    ("terminals", "enabled"): (True, False, True, False),
    ("audited_operations", "logins"): (True, True, True, True),
    ("audited_operations", "code_execution"): (False, False, False, True),
    ("compute", "dedicated_nodes"): (False, True, False, True),
    ("pod_security", "level"): (PodSecurityLevel.RESTRICTED,) * 4,
    ("pod_security", "read_only_root_fs"): (True, True, True, True),
    ("pod_security", "service_account_token"): (False, False, False, False),
    ("end_of_use", "destroy_volumes"): (True, True, True, True),
    ("end_of_use", "completion_report"): (True, True, True, True),
    ("audit_retention", "min_years"): (5, 5, 5, 5),
    ("audit_retention", "pruned_on_deletion"): (False, False, False, False),
    ("incident", "one_command_quarantine"): (True, True, True, True),
}


@pytest.mark.parametrize(("group", "setting"), sorted(MATRIX))
def test_the_control_matrix_of_tiers_md(catalog, group, setting):
    got = tuple(getattr(catalog.get(t).control(group), setting) for t in TIER_IDS)
    assert got == MATRIX[(group, setting)]
