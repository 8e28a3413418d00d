"""The local backend's one error hierarchy."""

from __future__ import annotations

__all__ = ["LocalBackendError", "PortalError", "SetupError"]


class LocalBackendError(Exception):
    """Base of every error this package raises on purpose."""


class SetupError(LocalBackendError):
    """A setting or input of the backend itself is unusable: one sentence, exit 2."""


class PortalError(LocalBackendError):
    """The portal's admin API refused or could not be reached; ``temporary`` says retry."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary
