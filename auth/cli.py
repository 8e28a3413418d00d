"""The portal's click groups, for ``controller.cli`` to add to the ``enclave`` command."""

from ._cli import enclaves, portal, users

__all__ = ["enclaves", "portal", "users"]
