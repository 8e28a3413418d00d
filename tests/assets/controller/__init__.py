"""Enclave files for the controller's tests: the examples and the invalid corpus.

``EXAMPLES``: one valid Enclave per tier (``examples/enclaves/``). ``INVALID``: files
made by ``make_invalid.py``, each refused; ``EXPECTED`` maps each stem to the field
its refusal names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples" / "enclaves").glob("*.yaml"))
INVALID = Path(__file__).resolve().parent / "invalid"
EXPECTED: dict[str, str] = yaml.safe_load((INVALID / "expected.yaml").read_text("utf-8"))


def load_document(path: Path) -> dict[str, Any]:
    """One YAML document as a mapping (a fresh copy each call, safe to edit)."""
    doc = yaml.safe_load(path.read_text("utf-8"))
    assert isinstance(doc, dict), path
    return doc


def example(tier: str) -> Path:
    return REPO / "examples" / "enclaves" / f"{tier}.yaml"
