"""The hub's and the sandboxed server's commands leave out only the IRI grammar, which
nothing they load uses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jupyter_events
import jupyter_server
import jupyterhub
import yaml

from controller.workspace._singleuser import IRI_GRAMMAR

_IRI_FORMATS = {"iri", "iri-reference"}


def _formats(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("format"), str):
            yield node["format"]
        for value in node.values():
            yield from _formats(value)
    elif isinstance(node, list):
        for value in node:
            yield from _formats(value)


def _schemas() -> Iterator[Path]:
    for root in (
        Path(jupyter_events.__file__).parent / "schemas",
        Path(jupyter_server.__file__).parent / "event_schemas",
        Path(jupyterhub.__file__).parent / "event-schemas",
        Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas",
    ):
        assert root.is_dir(), root
        for path in root.rglob("*"):
            if path.suffix in (".json", ".yaml", ".yml"):
                yield path


def test_no_schema_the_server_loads_uses_the_iri_formats() -> None:
    found: dict[str, set[str]] = {}
    for path in _schemas():
        text = path.read_text()
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        for fmt in _formats(doc):
            found.setdefault(fmt, set()).add(path.name)
    assert "uri" in found  # the scan reads the schemas (jupyter_events' metaschema)
    assert not _IRI_FORMATS & set(found), {f: found[f] for f in _IRI_FORMATS & set(found)}


def _checkers(*, blocked: bool) -> dict[str, Any]:
    code = (
        "import json, sys\n"
        "from controller.workspace._singleuser import without_iri_grammar\n"
        f"if {blocked}: without_iri_grammar()\n"
        "import jsonschema\n"
        "checkers = sorted(jsonschema.Draft7Validator.FORMAT_CHECKER.checkers)\n"
        f"grammar = sys.modules.get({IRI_GRAMMAR!r}) is not None\n"
        "print(json.dumps({'checkers': checkers, 'grammar': grammar}))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    return result


def test_the_server_command_drops_the_iri_checker_and_keeps_every_other_one() -> None:
    installed = _checkers(blocked=False)
    assert installed["grammar"] is True  # present here: the command is what leaves it out
    blocked = _checkers(blocked=True)
    assert blocked["grammar"] is False
    assert set(installed["checkers"]) - set(blocked["checkers"]) == _IRI_FORMATS
    assert {"uri", "date-time"} <= set(blocked["checkers"])


def test_both_commands_are_the_jupyterhub_programs_they_stand_for() -> None:
    for module, program in (("_hub", "jupyterhub"), ("_singleuser", "jupyterhub-singleuser")):
        argv = [sys.executable, "-m", f"controller.workspace.{module}", "--version"]
        ours = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        theirs = subprocess.run(
            [str(Path(sys.executable).with_name(program)), "--version"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ours.returncode == theirs.returncode == 0, (ours.stderr, theirs.stderr)
        assert ours.stdout.strip() == theirs.stdout.strip() != "", (ours.stdout, theirs.stdout)
