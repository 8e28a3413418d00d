"""Operator overlays: tightening is applied, loosening is refused unless declared unsafe."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import structlog

from policies import CatalogError, load_catalog

ASSETS = Path(__file__).parents[2] / "assets" / "policies" / "overlays"


def _cases():
    with (ASSETS / "cases.tsv").open() as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]
    return [pytest.param(*r, id=r[0].removesuffix(".yaml")) for r in rows]


@pytest.mark.parametrize(("file", "path", "problem"), _cases())
def test_each_bad_overlay_is_refused_with_file_path_and_problem(file, path, problem):
    with pytest.raises(CatalogError) as e:
        load_catalog(overlay=ASSETS / file)
    assert e.value.file == str(ASSETS / file)
    assert e.value.path == path
    assert problem in e.value.problem
    assert "\n" not in str(e.value)


def test_every_asset_file_is_a_listed_case():
    listed = {p.values[0] for p in _cases()}
    assert listed == {p.name for p in ASSETS.glob("*.yaml")}


def test_tightening_is_applied_and_leaves_other_tiers_alone(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "apiVersion: enclave.dev/v1alpha1\nkind: TierOverlay\ntiers:\n"
        "  nbdc-standard:\n    session: {idle_timeout_s: 600}\n"
        "    login: {password_min_length: 14, require_phishing_resistant: true}\n"
        "    export_results: {allowed: false}\n"
    )
    base = load_catalog()
    tightened = load_catalog(overlay=overlay)
    t = tightened.get("nbdc-standard")
    assert t.session.idle_timeout_s == 600
    assert t.login.password_min_length == 14
    assert t.login.require_phishing_resistant is True
    assert t.export_results.allowed is False
    assert t.session.sources == base.get("nbdc-standard").session.sources
    assert tightened.get("nbdc-high") == base.get("nbdc-high")
    assert tightened.unsafe == ()


def test_an_unsafe_exception_is_applied_warned_about_and_visible(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "unsafeExceptions:\n  - tier: nbdc-high\n    control: terminals.enabled\n"
        "    value: true\n    reason: Review board decision 2026-10-01 for the pilot.\n"
    )
    with structlog.testing.capture_logs() as logs:
        catalog = load_catalog(overlay=overlay)
    tier = catalog.get("nbdc-high")
    assert tier.terminals.enabled is True
    (exc,) = tier.unsafe_exceptions
    assert (exc.control, exc.value, exc.baseline) == ("terminals.enabled", True, False)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warnings
    assert warnings[0]["control"] == "terminals.enabled"
    assert warnings[0]["tier"] == "nbdc-high"


def test_an_empty_overlay_changes_nothing(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("")
    assert dict(load_catalog(overlay=overlay).tiers) == dict(load_catalog().tiers)


def test_a_missing_overlay_file_is_named(tmp_path):
    with pytest.raises(CatalogError, match=r"nope\.yaml: file not found"):
        load_catalog(overlay=tmp_path / "nope.yaml")


def test_a_dependency_switched_off_by_an_unsafe_exception_names_both_controls(tmp_path):
    # Switching off the dependent first is an ordinary unsafe exception; only then may
    # the control it depended on go too.
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "unsafeExceptions:\n"
        "  - {tier: nbdc-high, control: audited_operations.file_events, value: false,"
        " reason: 'Pilot without the file audit, board decision 12.'}\n"
        "  - {tier: nbdc-high, control: egress.audit_intake, value: false,"
        " reason: 'Pilot without the file audit, board decision 12.'}\n"
    )
    tier = load_catalog(overlay=overlay).get("nbdc-high")
    assert (tier.audited_operations.file_events, tier.egress.audit_intake) == (False, False)
    assert [e.control for e in tier.unsafe_exceptions] == [
        "audited_operations.file_events",
        "egress.audit_intake",
    ]
