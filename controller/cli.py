"""The ``enclave`` command: one root group; each package contributes its own group.

Errors that a user caused leave as one sentence on stderr with exit code 2;
failed checks exit 1. Library code never exits the process; only this module does.
"""

from __future__ import annotations

import click

from auth.cli import enclaves, portal, users
from policies.cli import tiers

from . import __doc__ as _pkg_doc  # noqa: F401  (keeps the package docstring importable)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="enclave", prog_name="enclave")
def cli() -> None:
    """Enclave: data-visiting workspaces for sensitive human biodata."""


cli.add_command(tiers)
cli.add_command(portal)
cli.add_command(users)
cli.add_command(enclaves)


def main() -> None:
    cli(prog_name="enclave")
