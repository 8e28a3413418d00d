"""The ``enclave`` command: one root group; each package contributes its own group.

Errors that a user caused leave as one sentence on stderr with exit code 2;
failed checks exit 1. Library code never exits the process; only this module does.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

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
    "clients": "auth.cli:clients",
    "render": "controller.kube.cli:render",
    "crd": "controller.kube.cli:crd",
    "isolation": "controller.kube.cli:isolation",
    "quarantine": "controller.kube.cli:quarantine",
    "controller": "controller.local.cli:controller",
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
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="ENCLAVE_DEMO_DIR",
    default=Path(".state/demo"),
    show_default=True,
    help="State directory: keys, stores, tokens, logs (env: ENCLAVE_DEMO_DIR).",
)
@click.option(
    "--audit-port", type=int, default=8700, envvar="ENCLAVE_DEMO_AUDIT_PORT", show_default=True
)
@click.option(
    "--portal-port", type=int, default=8000, envvar="ENCLAVE_DEMO_PORTAL_PORT", show_default=True
)
@click.option("--once", is_flag=True, help="Start, print how to log in, then stop (a smoke check).")
def demo(state: Path, audit_port: int, portal_port: int, once: bool) -> None:
    """Run the embedded default on this machine and print how to log in."""
    from ._demo import DemoError, run_demo

    try:
        run_demo(state=state, audit_port=audit_port, portal_port=portal_port, once=once)
    except DemoError as e:
        click.echo(f"enclave demo: {e}", err=True)
        sys.exit(1)


def main() -> None:
    cli(prog_name="enclave")
