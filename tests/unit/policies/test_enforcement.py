"""Each setting says who enforces it today; no claim outruns the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import CONTROL_GROUPS
from policies._control import strictness_of
from policies._enforcement import ENFORCEMENT, NOT_YET_ENFORCED, enforced_by

ROOT = Path(__file__).parents[3]


def test_every_claim_names_a_real_setting():
    every = {
        f"{g}.{n}"
        for g, model in CONTROL_GROUPS.items()
        for n in model.model_fields
        if strictness_of(model, n) is not None
    }
    assert set(ENFORCEMENT) <= every, sorted(set(ENFORCEMENT) - every)


@pytest.mark.parametrize("setting", sorted(ENFORCEMENT))
def test_a_claimed_enforcer_is_backed_by_the_code_it_names(setting):
    entry = ENFORCEMENT[setting]
    assert entry.evidence, setting
    for path, text in entry.evidence:
        assert path.split("/")[0] in {"auth", "audit", "controller", "policies"}, path
        assert text in (ROOT / path).read_text(), f"{setting}: {path} lacks {text!r}"


@pytest.mark.parametrize(
    "setting",
    [
        # Not built yet: the airlock, clipboard control, cross-project path checks,
        # log-review reminders, the data-location register, image patching, encryption.
        "isolation.cross_project_paths",
        "clipboard.copy_out_disabled",
        "export_results.reviewers",
        "export_data.allowed",
        "import.malware_scan",
        "access_log_review.overdue_reminder",
        "register.data_locations",
        "images.patched_base_images",
        "encryption_at_rest.volumes",
        "stop_order.stop_and_delete",
    ],
)
def test_what_unbuilt_components_would_enforce_says_not_yet(setting):
    assert enforced_by(*setting.split(".")) == NOT_YET_ENFORCED
