"""docs/audit.md stays true: its commands run, its metric names exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from prometheus_client import REGISTRY

import audit._metrics  # registers the metrics
from audit.cli import audit

DOC = Path(__file__).resolve().parents[3] / "docs" / "audit.md"


def _block(after: str) -> list[str]:
    text = DOC.read_text()
    section = text[text.index(after) :]
    block = section[section.index("```console\n") + 11 :]
    block = block[: block.index("```")]
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def test_the_command_line_section_runs(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        json.dumps(
            {
                "id": "doc-1",
                "time": "2026-11-26T10:00:00Z",
                "source": "portal",
                "actor": "researcher@example.jp",
                "action": "session.started",
                "enclave": "proj-1",
                "outcome": "success",
                "client_ip": "192.0.2.10",
                "details": {"tier": "nbdc-high", "factors": ["password", "webauthn"]},
            }
        )
        + "\n"
    )
    commands = _block("## Using it from the command line")
    assert len(commands) == 8
    for cmd in commands:
        assert cmd.startswith("enclave audit ")
        args = cmd.replace("/srv/audit/", f"{tmp_path}/").split()[2:]
        r = CliRunner().invoke(audit, args)
        assert r.exit_code == 0, (cmd, r.stderr)
    assert (tmp_path / "checkpoint-1").read_text().startswith("audit.example.org/enclave\n1\n")


def test_the_metric_names_exist() -> None:
    text = DOC.read_text()
    section = text[text.index("## Metrics") :]
    listed = re.findall(
        r"`([a-z_]+)(?:\{[a-z]+\})?`", section[section.index("`enclave_audit_`:") + 17 :]
    )
    assert len(listed) == 9
    names = {n for m in REGISTRY.collect() for n in [m.name, *(s.name for s in m.samples)]}
    for name in listed:
        family = f"enclave_audit_{name}".removesuffix("_total")
        assert f"enclave_audit_{name}" in names or family in names, name


def test_the_python_section_runs(tmp_path: Path) -> None:
    text = DOC.read_text()
    section = text[text.index("## Using it from Python") :]
    code = section[section.index("```python\n") + 10 :]
    code = code[: code.index("```")].replace("/srv/audit/", f"{tmp_path}/")
    from audit._note import generate_key, write_key_file

    write_key_file(tmp_path / "signing.key", generate_key("audit.example.org/enclave"))
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)  # noqa: S102 - the documented example
    page = scope["page"]
    assert isinstance(page, list)
    assert [p.event.action for p in page] == ["auth.factor.verified"]


def test_every_test_the_threat_model_names_exists() -> None:
    """Each row of "who can do what to the log" names the test that shows it: that test
    must exist, so the table cannot claim a protection nothing checks."""
    text = DOC.read_text()
    table = text[text.index("## Threat model: who can do what to the log") :]
    table = table[: table.index("\n## ")]
    tests = DOC.parents[1] / "tests"
    named = re.findall(r"`((?:unit/)?[\w/]+\.py)::(\w+)", table)
    assert len(named) >= 25, named
    for path, name in named:
        where = tests / path if path.startswith("unit/") else tests / "integration" / path
        assert where.is_file(), f"{path} (named by the threat model) does not exist"
        assert f"def {name}(" in where.read_text(), f"{path}::{name} does not exist"
