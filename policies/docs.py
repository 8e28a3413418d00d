"""Generate ``docs/tiers.md`` from the catalog: ``python -m policies.docs --write|--check FILE``.

The catalog is the single source of truth; CI runs ``--check`` so the page can
never disagree with what the product enforces.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Mapping
from pathlib import Path

from ._catalog import TIER_IDS, load_catalog
from ._enforcement import enforced_by
from ._groups import CONTROL_GROUPS
from ._model import DEPENDENCIES, ORGANISATIONAL_DUTIES, Tier
from ._render import citation_text, format_value
from ._sources import SOURCES

__all__ = ["render_markdown"]

_HEADER = """<!-- Generated from policies/catalog by `make docs`; do not edit by hand. -->
# Security tiers

Every enclave has one tier, chosen from its data provider's security level. The
tier decides every control below; nothing else in Enclave hard-codes a tier's
rules. Each control cites the guideline clauses that demand it (short names
below), and each setting says which component enforces it today: "not yet
enforced" where that component (the workspaces, the controller, the airlock) is
not built yet. Operators may **tighten** any setting with an overlay file; a
loosening is refused unless declared as an unsafe exception (see the end).

Read the catalog in force with `enclave tiers list` and `enclave tiers show TIER`
(`--json` for scripts; the JSON includes every citation and who enforces each
setting).
"""

_OVERLAY = """
## Tightening a tier: the overlay file

```yaml
apiVersion: enclave.dev/v1alpha1
kind: TierOverlay
tiers:                         # only tightening is accepted here
  nbdc-standard:
    session: {idle_timeout_s: 600}
    login: {password_min_length: 14}
unsafeExceptions:              # a loosening, on purpose, with a reason
  - tier: nbdc-high
    control: terminals.enabled
    value: true
    reason: Review board decision 2026-10-01 (minutes 12) for the pilot.
```

Pass it with `--overlay FILE` or the `ENCLAVE_TIER_OVERLAY` environment variable.
A malformed overlay (wrong type, unknown key, unknown tier, or a loosening under
`tiers`) stops the command with exit code 2 and one line naming the file, the key
path and the problem. An unsafe exception is applied, logged as a warning every
time the catalog is loaded, and shown in red by `enclave tiers show`.

Some settings depend on others, and a setting another one depends on cannot be
switched off, not even as an unsafe exception, while the dependent one is on (the
refusal names both); switch off the dependent one first, as an unsafe exception:

{dependencies}

## What no tier can enforce

These are organisational duties of the operator or the researcher, each with the
clauses that state it (each clause quoted at the end of this section):

{duties}

Screen photography, shoulder-surfing, printing from the researcher's own device
and physical room entry are outside the software. Clipboard copy-out from a
browser can be discouraged but not prevented, and `/api/contents` returns file
bytes to the browser by design. Events emitted by the single-user server are
user-influenced, so every audit event carries its source. NetworkPolicies are
enforced only where the cluster's network plugin enforces them.

#### What the duties' clauses say

{duty_quotes}
"""


def render_markdown() -> str:
    catalog = load_catalog()
    tiers = [catalog.get(t) for t in TIER_IDS]
    out = [_HEADER, "\n## The control matrix\n"]
    out.append(
        "| control | setting | "
        + " | ".join(f"`{t.id}`" for t in tiers)
        + " | enforced today by | sources |"
    )
    out.append("|---|---|" + "---|" * len(tiers) + "---|---|")
    for group, model in CONTROL_GROUPS.items():
        controls = [t.control(group) for t in tiers]
        sources = list(dict.fromkeys(c for ctl in controls for c in ctl.sources))
        for i, (name, _, _, description) in enumerate(controls[0].settings()):
            values = [format_value(name, getattr(ctl, name)) for ctl in controls]
            out.append(
                f"| {model.title if i == 0 else ''} | {description} | "
                + " | ".join(values)
                + f" | {enforced_by(group, name)} | {', '.join(sources) if i == 0 else ''} |"
            )
    out.append("\n## What each cited clause says\n")
    out.append(
        "Beside each control, the clauses it cites and what each says in the guideline's\n"
        "own words (“quoted”), with the version the quote was read in and where that\n"
        "version is published (`policies/clauses.yaml` records the stored copy read).\n"
        "Quotes are short; the full guideline governs. A remark after *Enclave's note* is\n"
        "ours, not the guideline's. Where a clause is **not quoted** the line says why,\n"
        "and any text shown is TIERS.md's summary, not the guideline's wording. A\n"
        "citation marked *by analogy* borrows a clause that does not apply to an\n"
        "off-premise server as such (NBDC-U7 1.5's preconditions and NBDC-U7 3, the data\n"
        "user's own LAN and server room).\n"
    )
    for group, model in CONTROL_GROUPS.items():
        out.append(f"#### {model.title}\n")
        out.extend(_quotes(group, tiers))
    out.append("## Each tier in plain words\n")
    for t in tiers:
        out.append(f"### `{t.id}`: {t.name} ({t.provider} {t.provider_level})\n")
        out.append(f"{t.summary}\n")
        for _, control in t.controls():
            out.append(
                f"- **{type(control).title}**: {control.note} ({'; '.join(control.sources)})"
            )
        out.append("")
    out.append("## Sources\n")
    out.append("| short name | document |")
    out.append("|---|---|")
    for short, title in SOURCES.items():
        out.append(f"| {short} | {title} |")
    dependencies = "\n".join(
        f"- `{d.needs}`, while `{d.setting}` is on: {d.why}." for d in DEPENDENCIES
    )
    duties = "\n".join(f"- {d.duty} ({'; '.join(d.sources)})" for d in ORGANISATIONAL_DUTIES)
    duty_quotes = _quote_lines(dict.fromkeys(c for d in ORGANISATIONAL_DUTIES for c in d.sources))
    out.append(
        _OVERLAY.replace("{dependencies}", dependencies)
        .replace("{duties}", duties)
        .replace("{duty_quotes}", "\n".join(duty_quotes))
    )
    return "\n".join(out).rstrip() + "\n"


def _quotes(group: str, tiers: list[Tier]) -> list[str]:
    """One quote per citation of ``group``, naming the tiers that cite it when not all do."""
    citing: dict[str, list[str]] = {}
    for t in tiers:
        for citation in t.control(group).sources:
            citing.setdefault(citation, []).append(t.id)
    return _quote_lines(
        {c: "" if len(ids) == len(tiers) else f" ({', '.join(ids)})" for c, ids in citing.items()}
    )


def _quote_lines(citations: Mapping[str, str | None]) -> list[str]:
    """A quote line per citation, each followed by what it is cited for (or nothing)."""
    return [f"> **{c}**{only or ''}: {citation_text(c)}\n" for c, only in citations.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies.docs", description=__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="FILE", type=Path)
    mode.add_argument("--check", metavar="FILE", type=Path)
    args = parser.parse_args(argv)
    text = render_markdown()
    if args.write:
        args.write.write_text(text, "utf-8")
        return 0
    current = args.check.read_text("utf-8") if args.check.exists() else ""
    if current != text:
        diff = difflib.unified_diff(
            current.splitlines(), text.splitlines(), str(args.check), "generated", lineterm=""
        )
        sys.stderr.write("\n".join(list(diff)[:40]) + "\n")
        sys.stderr.write(f"{args.check} is stale: run `make docs` and commit it.\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
