"""docs/cli.md's reference half is generated from the click tree and must be fresh."""

from __future__ import annotations

from pathlib import Path

from controller import clidocs
from controller.cli import _GROUPS

DOC = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_the_committed_page_matches_the_commands() -> None:
    assert clidocs.main(["--check", str(DOC)]) == 0


def test_every_command_group_has_a_section() -> None:
    reference = clidocs.render_reference()
    for group in _GROUPS:
        assert f"### `enclave {group}`" in reference


def test_a_stale_page_is_reported(tmp_path: Path, capsys) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text(DOC.read_text().replace("### `enclave audit verify`", "### `enclave x`"))
    assert clidocs.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert clidocs.main(["--write", str(stale)]) == 0
    assert clidocs.main(["--check", str(stale)]) == 0
