"""The portal's click groups, for ``controller.cli`` to add to the ``enclave`` command."""

from ._cli import clients, enclaves, portal, users

__all__ = ["clients", "enclaves", "portal", "users"]
