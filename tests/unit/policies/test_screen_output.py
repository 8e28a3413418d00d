"""The screen-output control: a per-tier budget for bytes sent to the browser."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from policies import TIER_IDS, CatalogError, ScreenOutputAction, load_catalog
from policies._render import format_value

CATALOG_DIR = Path(__file__).parents[3] / "policies" / "catalog"


def _catalog_with(tmp_path: Path, tier: str, **settings: object) -> Path:
    for f in CATALOG_DIR.glob("*.yaml"):
        shutil.copy(f, tmp_path)
    target = tmp_path / f"{tier}.yaml"
    data = yaml.safe_load(target.read_text())
    data["screen_output"].update(settings)
    target.write_text(yaml.safe_dump(data, allow_unicode=True))
    return target


@pytest.mark.parametrize("warn", [64 << 20, 65 << 20])
def test_a_warning_that_would_come_at_or_after_the_budget_is_refused(tmp_path, warn):
    target = _catalog_with(tmp_path, "tommo-strong", warn_bytes=warn)
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.file == str(target)
    assert e.value.path == "screen_output"
    assert e.value.problem == (
        f"warn_bytes ({warn}) must be below budget_bytes ({64 << 20}): "
        "the warning comes before the budget applies"
    )
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("setting", ["budget_bytes", "warn_bytes"])
def test_a_zero_screen_budget_or_warning_is_refused(tmp_path, setting):
    _catalog_with(tmp_path, "nbdc-standard", **{setting: 0})
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.path == f"screen_output.{setting}"
    assert e.value.problem.startswith("must be at least 1 byte (got 0)")


def test_an_unknown_action_past_the_budget_is_refused(tmp_path):
    _catalog_with(tmp_path, "nbdc-standard", past_budget="warn_only")
    with pytest.raises(CatalogError) as e:
        load_catalog(catalog_dir=tmp_path)
    assert e.value.path == "screen_output.past_budget"
    assert "refuse_output" in e.value.problem
    assert "stop_session" in e.value.problem


def test_stricter_tiers_get_smaller_screen_budgets_and_tommo_strong_stops_the_session():
    tiers = {t: load_catalog().get(t).screen_output for t in TIER_IDS}
    assert tiers["nbdc-high"].budget_bytes < tiers["nbdc-standard"].budget_bytes
    assert tiers["tommo-strong"].budget_bytes < tiers["tommo-standard"].budget_bytes
    assert tiers["tommo-strong"].past_budget is ScreenOutputAction.STOP_SESSION
    for control in tiers.values():
        assert "ENCLAVE" in control.sources  # the numbers are Enclave's, not a guideline's
        assert "Enclave's choice" in control.note


@pytest.mark.parametrize(
    ("value", "shown"),
    [(64 << 20, "64 MiB"), (3 << 30, "3 GiB"), (3072, "3 KiB"), (1000, "1000 B")],
)
def test_byte_settings_are_shown_in_binary_units(value, shown):
    assert format_value("budget_bytes", value) == shown
