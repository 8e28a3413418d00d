"""``enclave tiers`` as operators and scripts run it: the real console script."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policies import CONTROL_GROUPS, TIER_IDS
from policies.docs import render_markdown

ROOT = Path(__file__).parents[2]
ENCLAVE = Path(sys.executable).with_name("enclave")
OVERLAYS = ROOT / "tests" / "assets" / "policies" / "overlays"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert ENCLAVE.exists(), f"{ENCLAVE} is missing: run `make setup`"
    return subprocess.run(
        [str(ENCLAVE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ENCLAVE_LOG_FORMAT": "json", **(env or {})},
    )


def test_list_json_has_every_tier_control_and_citation():
    r = run("tiers", "list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["kind"] == "TierCatalog"
    assert [t["id"] for t in doc["tiers"]] == list(TIER_IDS)
    for tier in doc["tiers"]:
        assert list(tier["controls"]) == list(CONTROL_GROUPS)
        for group, control in tier["controls"].items():
            assert control["sources"], f"{tier['id']}.{group}"
            assert control["settings"], f"{tier['id']}.{group}"
    strong = doc["tiers"][3]["controls"]
    assert strong["login"]["settings"]["require_biometric"] is True
    assert strong["egress"]["settings"]["dns"] is False
    assert "TMM-SP" in strong["login"]["sources"]


def test_show_is_readable_for_an_officer():
    r = run("tiers", "show", "tommo-strong")
    assert r.returncode == 0, r.stderr
    for phrase in (
        "ToMMo strong",
        "Login factors",
        "One factor must be an attested biometric",
        "Idle time after which a session locks",
        "15 min",
        "12 h",
        "The workspace may query cluster DNS",
        "Every code execution request",
        "TMM-SP",
        "NIST SP 800-63B-4",
        "enforced by",
    ):
        assert phrase in r.stdout, phrase
    assert "{" not in r.stdout  # prose and tables, not a data dump


def _show_rows(tier: str) -> dict[str, str]:
    """``tiers show`` at a width where every row is one line: setting -> enforced by."""
    r = run("tiers", "show", tier, env={"COLUMNS": "400"})
    assert r.returncode == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 3:
            rows[cells[0]] = cells[2]
    return rows


def test_show_says_who_enforces_each_setting_and_claims_nothing_unbuilt():
    rows = _show_rows("nbdc-high")
    # The portal enforces login factors and the source allow-list today ...
    assert rows["Independent factors verified at login."].startswith("portal")
    assert rows[
        "Entry only from listed client networks (access terminals, remote security "
        "areas); an empty list denies."
    ].startswith("portal")
    # ... the controller and the hub configuration enforce theirs ...
    assert rows["Workspaces run on a dedicated node pool (taint + selector)."].startswith(
        "controller (Kubernetes)"
    )
    assert rows["Jupyter terminals are available."].startswith("enclave hub configuration")
    # ... and what nothing enforces yet says so (the airlock is not built).
    for setting in (
        "Outbound internet from the workspace.",
        "Data (individual-level records or dataset files) may leave through the airlock.",
    ):
        assert rows[setting] == "not yet enforced", setting


def test_show_says_what_each_cited_clause_requires():
    r = run("tiers", "show", "nbdc-standard", env={"COLUMNS": "1000"})
    assert r.returncode == 0, r.stderr
    assert "NBDC-U7 2.3 item 5: “When leaving a data access terminal," in r.stdout
    assert "(around 15 minutes).” (NBDC-U7 Ver. 7.0 (2024-04-01), https://" in r.stdout
    assert "NBDC-U7 2.1 item 4: “Access to the controlled-access data is granted" in r.stdout
    # Where there is no quote, show says so and does not pass a summary off as the text.
    assert "ENCLAVE: cited as a whole: Enclave's own product decision" in r.stdout
    assert "; not quoted: there is no guideline text to quote" in r.stdout


def test_show_lists_the_operators_organisational_duties():
    r = run("tiers", "show", "nbdc-standard", env={"COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "Organisational duties" in r.stdout
    assert "physical server room" in r.stdout
    assert "NBDC-DC4 §2" in r.stdout


def test_show_json_matches_list_json():
    one = json.loads(run("tiers", "show", "nbdc-high", "--json").stdout)
    every = json.loads(run("tiers", "list", "--json").stdout)
    assert one == every["tiers"][1]


def _cases():
    with (OVERLAYS / "cases.tsv").open() as f:
        return [r for r in csv.reader(f, delimiter="\t") if r and not r[0].startswith("#")]


@pytest.mark.parametrize(("file", "path", "problem"), _cases(), ids=lambda v: str(v)[:30])
def test_bad_overlay_exits_2_with_one_line(file, path, problem):
    r = run("tiers", "list", "--overlay", str(OVERLAYS / file))
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(OVERLAYS / file) in lines[0]
    assert path in lines[0]
    assert problem in lines[0]
    assert "Traceback" not in r.stderr


def test_bad_catalog_dir_exits_2_naming_the_file(tmp_path):
    for f in (ROOT / "policies" / "catalog").glob("*.yaml"):
        shutil.copy(f, tmp_path)
    (tmp_path / "nbdc-high.yaml").write_text(
        (tmp_path / "nbdc-high.yaml").read_text().replace("enabled: false", "enabled: 'no'")
    )
    r = run("tiers", "list", env={"ENCLAVE_TIER_CATALOG": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"enclave: {tmp_path / 'nbdc-high.yaml'}: terminals.enabled: "
        "input should be a valid boolean (got 'no')"
    )


def test_unsafe_exception_is_warned_and_shown(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(
        "unsafeExceptions:\n  - {tier: nbdc-high, control: terminals.enabled, value: true,"
        " reason: Pilot approved by the review board on 2026-10-01.}\n"
    )
    r = run("tiers", "show", "nbdc-high", env={"ENCLAVE_TIER_OVERLAY": str(overlay)})
    assert r.returncode == 0, r.stderr
    assert "UNSAFE EXCEPTION terminals.enabled" in r.stdout
    warning = json.loads(r.stderr.strip().splitlines()[0])
    assert warning["level"] == "warning"
    assert warning["control"] == "terminals.enabled"


def test_unknown_tier_exits_2():
    r = run("tiers", "show", "nbdc-ultra")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "enclave: unknown tier 'nbdc-ultra'; known tiers: nbdc-standard, nbdc-high, "
        "tommo-standard, tommo-strong"
    )


def test_version_and_help_everywhere():
    assert run("--version").stdout.startswith("enclave, version ")
    for args in (
        ["--help"],
        ["tiers", "--help"],
        ["tiers", "list", "--help"],
        ["tiers", "show", "-h"],
    ):
        r = run(*args)
        assert r.returncode == 0, args
        assert "Usage:" in r.stdout, args


def test_docs_tiers_md_is_generated_from_the_catalog():
    assert (ROOT / "docs" / "tiers.md").read_text() == render_markdown(), "run `make docs`"


# Ten controls an officer spot-checks: the docs quote the guideline's own words beside
# each (NBDC-U7 Ver. 7.0, NBDC-DC4 Ver. 4.0), with the version and where it is published.
SPOT_CHECKS = {
    "Client source networks": (
        "NBDC-U7 2.1 item 4",
        "must be conducted solely from data servers or data access terminals",
    ),
    "Workspace egress": (
        "NBDC-DC4 2.1 server 3",
        "manage the access to/from the outside to the minimum necessary",
    ),
    "Sessions": (
        "NBDC-U7 2.3 item 5",
        "the screen is locked after a certain period of inactivity (around 15 minutes)",
    ),
    "End of use": (
        "NBDC-U7 2.3 item 12",
        "delete all data including all backups from all the devices",
    ),
    "Download to the browser": (
        "NBDC-U7 2.3 item 6",
        "disable a cache function, if any, which automatically saves data",
    ),
    "Import (airlock ingress)": (
        "NBDC-U7 2.2 server 6",
        "perform virus scan at once whenever moving a file from the outside",
    ),
    "Access-log review": (
        "NBDC-DC4 2.1 server 10",
        "acquire the access log of the data server and check it regularly",
    ),
    "Register of users and data": (
        "NBDC-U7 2.2 general 3",
        "The record must be managed so that the update history can be reviewed.",
    ),
    "Incident response": (
        "NBDC-U7 2.2 server 10",
        "disconnect the relevant data server or data access terminal immediately",
    ),
    "Login factors": (
        "NBDC-U7 3 (1) (by analogy)",
        "multi-factor authentication with at least two of the following three",
    ),
}


@pytest.mark.parametrize("title", sorted(SPOT_CHECKS))
def test_docs_quote_the_clause_behind_each_spot_checked_control(title):
    citation, words = SPOT_CHECKS[title]
    page = (ROOT / "docs" / "tiers.md").read_text()
    section = page.split(f"#### {title}\n", 1)[1].split("\n####", 1)[0]
    quoted = [line for line in section.splitlines() if line.startswith(f"> **{citation}**")]
    assert quoted, f"{title}: {citation} is not quoted"
    assert words in quoted[0]
    source = citation.split(" ")[0]
    version = {"NBDC-U7": "Ver. 7.0 (2024-04-01)", "NBDC-DC4": "Ver. 4.0 (2024-04-01)"}[source]
    assert f"({source} {version}, https://humandbs.dbcls.jp/en/guidelines/" in quoted[0]


def test_docs_list_the_organisational_duties_with_their_clauses():
    page = (ROOT / "docs" / "tiers.md").read_text()
    duties = page.split("## What no tier can enforce", 1)[1]
    for words, clause in (
        ("physical server room", "NBDC-DC4 §2"),
        ("Device disposal", ""),
        ("Training", ""),
        ("yearly checklist", ""),
        ("Accepting audits", ""),
        ("expert audit", "NBDC-DC4 2.1 general 7"),
        ("researcher's own terminal", "NBDC-U7 2.3 item 3"),
        ("viewing-room", "TMM-SP"),
    ):
        line = next((x for x in duties.splitlines() if words in x), None)
        assert line is not None, words
        assert clause in line, (words, clause)
