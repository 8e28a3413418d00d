"""The portal's click groups, for ``controller.cli`` to add to the ``enclave`` command."""

from ._cli import portal
from ._cli_admin import clients, enclaves, users

__all__ = ["clients", "enclaves", "portal", "users"]
