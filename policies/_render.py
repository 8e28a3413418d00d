"""One rendering of the catalog, shared by ``enclave tiers`` and ``docs/tiers.md``."""

from __future__ import annotations

import enum
from typing import Any

from ._catalog import Catalog
from ._enforcement import enforced_by
from ._model import Tier
from ._quotes import quote_table
from ._sources import SOURCE_TABLE, parse_citation

__all__ = ["catalog_as_dict", "citation_text", "format_value", "tier_as_dict"]

SCHEMA_VERSION = "enclave.dev/v1alpha1"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def tier_as_dict(tier: Tier) -> dict[str, Any]:
    """The stable machine-readable form of one tier (``--json``)."""
    controls: dict[str, Any] = {}
    for group, control in tier.controls():
        controls[group] = {
            "title": type(control).title,
            "settings": {name: _plain(value) for name, value, _, _ in control.settings()},
            "sources": list(control.sources),
            "note": control.note,
            "enforced_by": {name: enforced_by(group, name) for name, _, _, _ in control.settings()},
        }
    return {
        "id": tier.id,
        "name": tier.name,
        "provider": tier.provider,
        "provider_level": tier.provider_level,
        "summary": tier.summary,
        "controls": controls,
        "unsafe_exceptions": [
            {"control": e.control, "value": e.value, "baseline": e.baseline, "reason": e.reason}
            for e in tier.unsafe_exceptions
        ],
    }


def catalog_as_dict(catalog: Catalog) -> dict[str, Any]:
    return {
        "apiVersion": SCHEMA_VERSION,
        "kind": "TierCatalog",
        "overlay": catalog.overlay,
        "tiers": [tier_as_dict(t) for t in catalog],
    }


def format_value(name: str, value: Any) -> str:
    """A value as a security officer reads it: yes/no, minutes and hours, words."""
    value = _plain(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.endswith("_s") and isinstance(value, int):
        if value % 3600 == 0:
            return f"{value // 3600} h"
        if value % 60 == 0:
            return f"{value // 60} min"
        return f"{value} s"
    if name.endswith("_bytes") and isinstance(value, int):
        for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if value % size == 0:
                return f"{value // size} {unit}"
        return f"{value} B"
    if name == "aal":
        return f"AAL{value}"
    return str(value)


def citation_text(citation: str) -> str:
    """What a cited clause says, in one line for an officer: its own words where they
    were read (with the version and address), else plainly marked as not quoted."""
    c = parse_citation(citation)
    key = c.source if c.clause is None else f"{c.source} {c.clause}"
    table = quote_table()
    quote = table.quotes.get(key)
    if quote is not None:
        doc = quote.document
        text = f"“{quote.text}” ({doc.source} {doc.version}, {quote.url})"
        return f"{text} Enclave's note: {quote.note}" if quote.note else text
    reason = table.unquoted.get(key, "no quote is recorded for it")
    if c.clause is None:
        return f"cited as a whole: {SOURCE_TABLE[c.source].title}; not quoted: {reason}"
    if not c.summary:
        return f"not quoted ({reason}), and TIERS.md does not summarise it; read the guideline"
    return f"not quoted ({reason}); TIERS.md's summary, not the guideline's wording: {c.summary}"
