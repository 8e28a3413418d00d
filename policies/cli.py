"""``enclave tiers``: read the tier catalog in force, for people and for scripts.

The overlay comes from ``--overlay FILE`` or the ``ENCLAVE_TIER_OVERLAY``
environment variable. A malformed catalog or overlay exits 2 with one line
naming the file, the key path and the problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ._catalog import Catalog, load_catalog
from ._enforcement import enforced_by
from ._model import ORGANISATIONAL_DUTIES, Tier
from ._render import catalog_as_dict, citation_text, format_value, tier_as_dict
from ._sources import SOURCES
from .errors import PolicyError

__all__ = ["tiers"]

_overlay_option = click.option(
    "--overlay",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ENCLAVE_TIER_OVERLAY",
    help="Operator overlay that tightens tiers (env: ENCLAVE_TIER_OVERLAY).",
)
_catalog_option = click.option(
    "--catalog",
    "catalog_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ENCLAVE_TIER_CATALOG",
    help="Directory of tier files replacing the built-in ones; may not loosen them.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _load(overlay: Path | None, catalog_dir: Path | None) -> Catalog:
    try:
        return load_catalog(overlay=overlay, catalog_dir=catalog_dir)
    except PolicyError as e:
        click.echo(f"enclave: {e}", err=True)
        sys.exit(2)


@click.group()
def tiers() -> None:
    """The security tiers and every control they enforce, with citations."""


@tiers.command("list")
@_json_option
@_overlay_option
@_catalog_option
def list_(as_json: bool, overlay: Path | None, catalog_dir: Path | None) -> None:
    """List the tiers with their main controls."""
    catalog = _load(overlay, catalog_dir)
    if as_json:
        click.echo(json.dumps(catalog_as_dict(catalog), ensure_ascii=False, indent=2))
        return
    table = Table(title="Enclave security tiers", show_lines=False)
    for column in (
        "tier",
        "provider level",
        "login",
        "idle / max",
        "client networks",
        "egress",
        "export",
        "terminals",
    ):
        table.add_column(column)
    for t in catalog:
        table.add_row(
            t.id + (" [red](unsafe exceptions)[/red]" if t.unsafe_exceptions else ""),
            f"{t.provider} {t.provider_level}",
            _login_summary(t),
            f"{format_value('idle_s', t.session.idle_timeout_s)} / "
            f"{format_value('max_s', t.session.max_session_s)}",
            "allow-list required" if t.network.source_allowlist_required else "optional allow-list",
            _egress_summary(t),
            _export_summary(t),
            "yes" if t.terminals.enabled else "no",
        )
    _console(min_width=160).print(table)


@tiers.command("show")
@click.argument("tier_id", metavar="TIER")
@_json_option
@_overlay_option
@_catalog_option
def show(tier_id: str, as_json: bool, overlay: Path | None, catalog_dir: Path | None) -> None:
    """Every control of one tier, what it means, and the clauses behind it."""
    catalog = _load(overlay, catalog_dir)
    try:
        tier = catalog.get(tier_id)
    except PolicyError as e:
        click.echo(f"enclave: {e}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(tier_as_dict(tier), ensure_ascii=False, indent=2))
        return
    console = _console()
    console.print(
        Panel(
            f"[bold]{tier.name}[/bold]  ({tier.provider} {tier.provider_level})\n\n{tier.summary}",
            title=tier.id,
        )
    )
    for exc in tier.unsafe_exceptions:
        console.print(
            f"[bold red]UNSAFE EXCEPTION[/bold red] {exc.control} = {exc.value!r} "
            f"(tier default {exc.baseline!r}): {exc.reason}"
        )
    for group, control in tier.controls():
        console.print(f"\n[bold]{type(control).title}[/bold]  [italic]{control.note}[/italic]")
        for citation in control.sources:
            console.print(f"  {citation}: {citation_text(citation)}", highlight=False)
        table = Table(show_lines=False)
        table.add_column("setting", ratio=5)
        table.add_column("value", ratio=1)
        table.add_column("enforced by", ratio=4)
        for name, value, _, description in control.settings():
            table.add_row(description, format_value(name, value), enforced_by(group, name))
        console.print(table)
    console.print("\n[bold]Organisational duties[/bold] (no tier can enforce them):")
    for duty in ORGANISATIONAL_DUTIES:
        console.print(f"  - {duty.duty} ({'; '.join(duty.sources)})", highlight=False)
    used = sorted({c.split(" ")[0] for _, ctl in tier.controls() for c in ctl.sources})
    console.print("\nSources:")
    for short in used:
        console.print(f"  {short}: {SOURCES[short]}")


def _console(*, min_width: int = 120) -> Console:
    """A console as wide as the terminal (or ``COLUMNS``), never narrower than ``min_width``."""
    return Console(width=max(min_width, Console().width))


def _login_summary(t: Tier) -> str:
    parts = [f"{t.login.min_factors} factors, {t.login.min_categories} categories"]
    if t.login.require_biometric:
        parts.append("biometric")
    if t.login.require_phishing_resistant:
        parts.append("WebAuthn")
    parts.append(f"AAL{t.login.aal}")
    return ", ".join(parts)


def _egress_summary(t: Tier) -> str:
    allowed = [name for name in ("hub_api", "audit_intake", "dns") if getattr(t.egress, name)]
    return "only " + ", ".join(a.replace("_", " ") for a in allowed)


def _export_summary(t: Tier) -> str:
    r, d = t.export_results, t.export_data
    results = f"results: {r.reviewers} reviewer(s)" if r.allowed else "no results"
    if not d.allowed:
        return f"{results}; no data"
    conditions = [
        "committee" if d.security_committee_approval else "",
        "declared destination" if d.declared_destination else "",
        "copy kept" if d.retained_copy else "",
    ]
    return f"{results}; data: {', '.join(c for c in conditions if c)}"
