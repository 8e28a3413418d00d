"""Pure pieces of the officer UI: labels in both languages, SVG charts, CSV cells."""

from __future__ import annotations

import re
from pathlib import Path

from audit.service._app import csv_lines
from audit.ui import LABELS, pick_lang
from audit.ui._charts import stacked_bars

TEMPLATES = Path(__file__).parents[3] / "audit" / "ui" / "templates"


def test_english_and_japanese_have_the_same_labels() -> None:
    assert set(LABELS["en"]) == set(LABELS["ja"])
    assert all(LABELS["ja"][k] != "" for k in LABELS["ja"])


def test_every_label_a_template_uses_exists() -> None:
    used: set[str] = set()
    for f in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\.([a-z_]+)", f.read_text()))
    assert used
    assert used <= set(LABELS["en"]), used - set(LABELS["en"])


def test_language_choice() -> None:
    assert pick_lang(cookie="ja", accept_language="en-US") == "ja"
    assert pick_lang(cookie=None, accept_language="ja-JP,ja;q=0.9") == "ja"
    assert pick_lang(cookie="xx", accept_language=None) == "en"


def test_a_chart_escapes_labels_and_scales_to_the_peak() -> None:
    svg = stacked_bars(
        days=["2026-11-25", "2026-11-26"],
        series={"<script>x</script>": [1, 4], "e2": [0, 4]},
        title="T & <b>",
    )
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert "T &amp; &lt;b&gt;" in svg
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)
    ]
    assert heights[:3] == sorted(heights[:3])  # 1 of 8, then 4 and 4 of 8
    assert abs(heights[1] + heights[2] - 170.0) < 0.2  # the peak day fills the plot
    assert ">8<" in svg  # the day's total is printed


def test_csv_cells_cannot_become_formulas() -> None:
    text = csv_lines(
        [
            {
                "actor": '=HYPERLINK("x")',
                "action": "+1",
                "enclave": "-2",
                "outcome": "@a",
                "details": {"k": 1},
            }
        ],
        header=True,
    )
    row = text.splitlines()[1]
    assert "'=HYPERLINK" in row
    assert ",'+1," in row
    assert ",'-2," in row
    assert ",'@a," in row
    assert '"{""k"":1}"' in row
