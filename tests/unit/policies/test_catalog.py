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
    PodSecurityLevel,
    ScreenOutputAction,
    UnknownTierError,
    load_catalog,
)
from policies._catalog import _looser
from policies._control import Control, strictness_of
from policies._model import DEPENDENCIES
from policies._sources import SOURCE_TABLE, parse_citation

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


# --- citations name clauses that exist -------------------------------------------------


@pytest.mark.parametrize(
    "citation",
    [
        "NBDC-U7 item 34",  # the old catalog's: U7 has no consecutive item numbering
        "NBDC-U7 item 27",
        "NBDC-U7 2-2 item 13",
        "NBDC-U7 2.1 item 6",  # 2.1 has items 1-5
        "NBDC-U7 2.2 general 7",  # "Data use in general" has 1-6
        "NBDC-U7 2.2 server 11",  # "Data server" has 1-10
        "NBDC-U7 2.3 item 14",  # 2.3 has items 1-13
        "NBDC-U7 3 (4)",  # 3 has (1)-(3)
        "NBDC-U7 §3 ①",
        "NBDC-U7 1.5(5)",  # the data server has preconditions (1)-(4)
        "NBDC-DC4 2.1 server 13",  # DC4's "Data Server" list has 1-12
        "NBDC-DC4 2.2 item 14",  # "What the Operator Must Do" has 1-13
        "NBDC-S8 §5.3.3 item 14",  # §5.3.3 has items 1-13
        "SATRE 4.2",  # SATRE numbers its requirements 2.2.11, not 4.2
        "RFC8176 3",  # cited as a whole: no clause structure declared
    ],
)
def test_a_citation_of_a_clause_the_source_does_not_have_is_refused(tmp_path, citation):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    path = tmp_path / "nbdc-high.yaml"
    data = yaml.safe_load(path.read_text())
    data["session"]["sources"] = [citation]
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.path == "session.sources"
    assert citation in e.value.problem


@pytest.mark.parametrize(
    ("citation", "source", "clause", "by_analogy"),
    [
        ("NBDC-U7 2.3 item 5", "NBDC-U7", "2.3 item 5", False),
        ("NBDC-U7 2.2 server 6", "NBDC-U7", "2.2 server 6", False),
        ("NBDC-U7 2.2 general 3", "NBDC-U7", "2.2 general 3", False),
        ("NBDC-U7 1.5(3)", "NBDC-U7", "1.5(3)", False),
        ("NBDC-U7 3 (1) (by analogy)", "NBDC-U7", "3 (1)", True),
        ("NBDC-DC4 2.1 server 10", "NBDC-DC4", "2.1 server 10", False),
        ("NBDC-DC4 §2 (by analogy)", "NBDC-DC4", "§2", True),
        ("NBDC-S8 §5.3.3 item 10", "NBDC-S8", "§5.3.3 item 10", False),
        ("NIST-63B4 §3.2.2", "NIST-63B4", "§3.2.2", False),
        ("NIST-63B4", "NIST-63B4", None, False),
    ],
)
def test_the_citation_scheme_of_tiers_md_parses(citation, source, clause, by_analogy):
    c = parse_citation(citation)
    assert (c.source, c.clause, c.by_analogy) == (source, clause, by_analogy)


def test_each_source_declares_the_clause_structure_tiers_md_gives_it():
    u7 = SOURCE_TABLE["NBDC-U7"].clauses
    for prefix, count in (
        ("2.1 item", 5),
        ("2.2 general", 6),
        ("2.2 server", 10),
        ("2.3 item", 13),
    ):
        numbered = [c for c in u7 if c.rsplit(" ", 1)[0] == prefix]
        assert numbered == [f"{prefix} {n}" for n in range(1, count + 1)], prefix
    assert [c for c in u7 if c.startswith("3 ")] == ["3 (1)", "3 (2)", "3 (3)"]


def test_clauses_that_exclude_an_off_premise_server_are_cited_only_by_analogy(catalog):
    # NBDC-U7 1.5's preconditions apply "except in the case of using only the
    # off-premise-server", and so does all of NBDC-U7 3; Enclave is one.
    for tier in catalog:
        for group, control in tier.controls():
            for citation in control.sources:
                c = parse_citation(citation)
                if c.source == "NBDC-U7" and (c.clause or "").startswith(("1.5", "3 ")):
                    assert c.by_analogy, f"{tier.id}.{group}: {citation}"


@pytest.mark.parametrize(
    ("group", "wrong", "right"),
    [
        # 2.3 item 6 is the terminal's cache; copying what the screen shows is item 9.
        ("screen_output", "NBDC-U7 2.3 item 6", "NBDC-U7 2.3 item 9"),
        # §5.3.3 as a whole is 13 items; deletion at the end of use is item 10.
        ("end_of_use", "NBDC-S8 §5.3.3", "NBDC-S8 §5.3.3 item 10"),
        # A stop order (and its deletion) is §5.6 item 1, not §5.3.3.
        ("stop_order", "NBDC-S8 §5.3.3", "NBDC-S8 §5.6 item 1"),
        # Encrypted paths from the terminal are 2.3 item 8, which the control omitted.
        ("network", None, "NBDC-U7 2.3 item 8"),
        # 2.1 items 2 and 3 allow temporary moves and copies; neither asks for read-only.
        ("datasets", "NBDC-U7 2.1 item 3", "ENCLAVE"),
        # 2.1 item 2 allows a temporary move within the LAN; it says nothing of results.
        ("export_results", "NBDC-U7 2.1 item 2", "NBDC-U7 2.1 item 1"),
    ],
)
def test_each_control_cites_the_clause_whose_text_supports_it(catalog, group, wrong, right):
    for tier in catalog:
        sources = tier.control(group).sources
        assert right in sources, (tier.id, group)
        assert wrong is None or wrong not in sources, (tier.id, group)


def test_type_ii_room_clauses_are_cited_only_by_analogy(catalog):
    # NBDC-U7 3 does not apply to off-premise servers; NBDC-DC4 2 puts the room on the
    # operator. The digital controls cite them by analogy only.
    for tier in catalog:
        for group, control in tier.controls():
            for citation in control.sources:
                c = parse_citation(citation)
                if (c.source, (c.clause or "")[:1]) == ("NBDC-U7", "3") or c.clause == "§2":
                    assert c.by_analogy, f"{tier.id}.{group}: {citation}"


# --- the control matrix of TIERS.md ---------------------------------------------------

T, F = True, False
MiB = 1 << 20
REFUSE = ScreenOutputAction.REFUSE_OUTPUT
# The control matrix of TIERS.md, row by row, as the catalog must state it:
# (group, setting): values for nbdc-standard, nbdc-high, tommo-standard, tommo-strong.
MATRIX = {
    ("isolation", "dedicated_namespace"): (T, T, T, T),
    ("isolation", "cross_project_paths"): (F, F, F, F),
    ("datasets", "read_only"): (T, T, T, T),
    ("login", "min_factors"): (2, 2, 2, 2),
    ("login", "min_categories"): (2, 2, 2, 2),
    ("login", "require_phishing_resistant"): (F, T, F, T),
    ("login", "require_biometric"): (F, F, F, T),
    ("login", "require_device_bound"): (F, F, F, T),
    ("login", "webauthn_user_verification"): (F, T, F, T),
    ("login", "password_min_length"): (12, 12, 12, 12),
    ("login", "aal"): (2, 2, 2, 3),
    ("login", "enrolment_approval"): (F, T, F, T),
    ("session", "idle_timeout_s"): (900, 900, 900, 900),
    ("session", "max_session_s"): (43200, 43200, 43200, 43200),
    ("throttle", "max_consecutive_failures"): (100, 100, 100, 100),
    ("throttle", "backoff_after_failures"): (5, 5, 5, 5),
    ("throttle", "backoff_initial_s"): (30, 30, 30, 30),
    # NBDC-U7 2.1 item 4 and 2.3 item 3: an allow-list at every tier.
    ("network", "source_allowlist_required"): (T, T, T, T),
    ("network", "encrypted_transport"): (T, T, T, T),
    ("egress", "internet"): (F, F, F, F),
    ("egress", "hub_api"): (T, T, T, T),
    ("egress", "audit_intake"): (T, T, T, T),
    # NBDC-U7 2.1 item 1, 1.5(3), NBDC-DC4 2.1 server 3: no DNS at any tier.
    ("egress", "dns"): (F, F, F, F),
    ("egress", "cloud_metadata"): (F, F, F, F),
    ("browser_download", "allowed"): (F, F, F, F),
    ("browser_download", "cache_no_store"): (T, T, T, T),
    # TIERS.md has no row and no number for the screen: the numbers are Enclave's choice
    # (smaller where the tier is stricter); ToMMo strong stops the session.
    ("screen_output", "budget_bytes"): (256 * MiB, 128 * MiB, 256 * MiB, 64 * MiB),
    ("screen_output", "warn_bytes"): (192 * MiB, 96 * MiB, 192 * MiB, 48 * MiB),
    ("screen_output", "past_budget"): (REFUSE, REFUSE, REFUSE, ScreenOutputAction.STOP_SESSION),
    ("clipboard", "copy_out_disabled"): (T, T, T, T),
    ("export_results", "allowed"): (T, T, T, T),
    ("export_results", "reviewers"): (1, 1, 1, 2),
    ("export_results", "individual_level_data"): (F, F, F, F),
    ("export_data", "allowed"): (F, F, T, F),
    ("export_data", "security_committee_approval"): (T, T, T, T),
    ("export_data", "declared_destination"): (T, T, T, T),
    ("export_data", "retained_copy"): (T, T, T, T),
    ("import", "malware_scan"): (T, T, T, T),
    ("import", "reviewer_required"): (F, T, F, T),
    ("terminals", "enabled"): (T, F, T, F),
    ("audited_operations", "logins"): (T, T, T, T),
    ("audited_operations", "sessions"): (T, T, T, T),
    ("audited_operations", "spawns"): (T, T, T, T),
    ("audited_operations", "file_events"): (T, T, T, T),
    ("audited_operations", "exports"): (T, T, T, T),
    ("audited_operations", "admin_actions"): (T, T, T, T),
    ("audited_operations", "code_execution"): (F, F, F, T),
    ("access_log_review", "reviews_recorded"): (T, T, T, T),
    ("access_log_review", "overdue_reminder"): (T, T, T, T),
    ("access_log_review", "review_period_days"): (30, 30, 30, 30),
    ("register", "users"): (T, T, T, T),
    ("register", "data_locations"): (T, T, T, T),
    ("register", "change_history"): (T, T, T, T),
    ("compute", "dedicated_nodes"): (F, T, F, T),
    ("pod_security", "level"): (PodSecurityLevel.RESTRICTED,) * 4,
    ("pod_security", "read_only_root_fs"): (T, T, T, T),
    ("pod_security", "service_account_token"): (F, F, F, F),
    ("images", "no_unneeded_software"): (T, T, T, T),
    ("images", "patched_base_images"): (T, T, T, T),
    ("encryption_at_rest", "stores"): (T, T, T, T),
    ("encryption_at_rest", "volumes"): (T, T, T, T),
    # NBDC-U7 2.3 item 12: all project data, not only workspace volumes.
    ("end_of_use", "destroy_volumes"): (T, T, T, T),
    ("end_of_use", "destroy_snapshots_and_backups"): (T, T, T, T),
    ("end_of_use", "destroy_airlock_staging"): (T, T, T, T),
    ("end_of_use", "completion_report"): (T, T, T, T),
    ("stop_order", "stop_and_delete"): (T, T, T, T),
    ("audit_retention", "min_years"): (5, 5, 5, 5),
    ("audit_retention", "min_years_after_final_publication"): (3, 3, 3, 3),
    ("audit_retention", "pruned_on_deletion"): (F, F, F, F),
    ("incident", "one_command_quarantine"): (T, T, T, T),
    ("incident", "provider_report"): (T, T, T, T),
}


@pytest.mark.parametrize(("group", "setting"), sorted(MATRIX))
def test_the_control_matrix_of_tiers_md(catalog, group, setting):
    got = tuple(getattr(catalog.get(t).control(group), setting) for t in TIER_IDS)
    assert got == MATRIX[(group, setting)]


def test_the_matrix_covers_every_setting_of_every_control():
    every = {(g, name) for g, model in CONTROL_GROUPS.items() for name in _settings_of(model)}
    assert every == set(MATRIX)


def _settings_of(model):
    return [n for n in model.model_fields if strictness_of(model, n) is not None]


@pytest.mark.parametrize(
    ("stricter", "base"), [("nbdc-high", "nbdc-standard"), ("tommo-strong", "tommo-standard")]
)
def test_the_stricter_tier_is_nowhere_looser_than_its_base(catalog, stricter, base):
    high, low = catalog.get(stricter), catalog.get(base)
    for group, control in high.controls():
        for name, value, direction, _ in control.settings():
            old = getattr(low.control(group), name)
            assert not _looser(direction, old, value), f"{stricter} {group}.{name}"


# --- dependencies between controls ----------------------------------------------------


def test_every_dependency_names_two_real_settings_and_every_tier_satisfies_it(catalog):
    assert DEPENDENCIES
    for dep in DEPENDENCIES:
        for ref in (dep.setting, dep.needs):
            group, name = ref.split(".")
            assert name in _settings_of(CONTROL_GROUPS[group]), ref
        for tier in catalog:
            if dep.applies(tier):
                assert dep.holds(tier), f"{tier.id}: {dep.setting} needs {dep.needs}"


def test_the_file_event_audit_depends_on_the_audit_intake():
    assert any(
        (d.setting, d.needs) == ("audited_operations.file_events", "egress.audit_intake")
        for d in DEPENDENCIES
    )


def test_a_catalog_file_that_switches_off_a_dependency_is_refused(tmp_path):
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    target = tmp_path / "tommo-strong.yaml"
    data = yaml.safe_load(target.read_text())
    data["login"]["webauthn_user_verification"] = False
    target.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.path == "login.webauthn_user_verification"
    assert "login.require_biometric depends on it" in e.value.problem
