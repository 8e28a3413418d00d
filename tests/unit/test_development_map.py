"""The "where to change what" table of docs/development.md names files and tests
that exist: a newcomer following it never lands on a path that moved."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "development.md"


def _table() -> list[str]:
    """The rows of the table under the "Where to change what" heading."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Where to change what", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def _named(rows: list[str]) -> list[str]:
    """Every code span of the rows that names a path (with an optional ``::test``)."""
    spans = [s for row in rows[1:] for s in re.findall(r"`([^`]+)`", row)]
    return [s for s in spans if "/" in s and " " not in s]


def test_the_table_names_a_file_and_a_test_on_every_row() -> None:
    rows = _table()
    assert len(rows) > 10, "the table is missing or was cut short"
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 3, row
        assert re.search(r"`[^`]+/[^`]+`", cells[1]), f"no file named: {row}"
        assert "::test_" in cells[2], f"no test named: {row}"


def test_every_path_and_test_the_table_names_exists() -> None:
    missing = []
    for name in _named(_table()):
        path, _, test = name.partition("::")
        target = ROOT / path
        if not target.exists():
            missing.append(path)
        elif test and not re.search(
            rf"^(async )?def {re.escape(test)}\(", target.read_text(encoding="utf-8"), re.M
        ):
            missing.append(name)
    assert not missing, f"docs/development.md names what does not exist: {missing}"
