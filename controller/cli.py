"""The ``enclave`` command: one root group; each package contributes its own group.

Errors that a user caused leave as one sentence on stderr with exit code 2;
failed checks exit 1. Library code never exits the process; only this module does.
"""

from __future__ import annotations

import importlib

import click

from policies.telemetry import configure_logging

#: Each subcommand group, imported only when it is used: `enclave tiers` must not
#: pay for importing the portal's and the audit service's web stacks.
_GROUPS = {
    "tiers": "policies.cli:tiers",
    "audit": "audit.cli:audit",
    "portal": "auth.cli:portal",
    "users": "auth.cli:users",
    "enclaves": "auth.cli:enclaves",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_GROUPS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _GROUPS:
            module, attr = _GROUPS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
