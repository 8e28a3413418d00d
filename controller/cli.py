"""The ``enclave`` command: one root group; each package contributes its own group.

Errors that a user caused leave as one sentence on stderr with exit code 2;
failed checks exit 1. Library code never exits the process; only this module does.
"""

from __future__ import annotations

import click

from auth.cli import enclaves, portal, users
from policies.cli import tiers
from policies.telemetry import configure_logging


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="enclave", prog_name="enclave")
@click.option(
    "--log-level",
    default="info",
    envvar="ENCLAVE_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Minimum level of log events (env: ENCLAVE_LOG_LEVEL).",
)
def cli(log_level: str) -> None:
    """Enclave: data-visiting workspaces for sensitive human biodata."""
    configure_logging(level=log_level)


cli.add_command(tiers)
cli.add_command(portal)
cli.add_command(users)
cli.add_command(enclaves)


@cli.command()
def demo() -> None:
    """Run the embedded default on this machine and print how to log in."""
    from policies import load_catalog

    catalog = load_catalog()
    click.echo("Enclave demo (embedded default, no cluster)\n")
    click.echo("Built so far: the tier catalog. Tiers in force:")
    for tier in catalog:
        click.echo(f"  {tier.id:15} {tier.name}")
    click.echo(
        "\nNot built yet, so not started: the portal (login), the audit service and the\n"
        "local workspaces. Read a tier with: enclave tiers show nbdc-high"
    )


def main() -> None:
    cli(prog_name="enclave")
