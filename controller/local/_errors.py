"""The local backend's one error hierarchy."""

from __future__ import annotations

__all__ = ["LocalBackendError", "SandboxConfigError"]


class LocalBackendError(Exception):
    """Root of every error the local backend raises."""


class SandboxConfigError(LocalBackendError):
    """A sandbox was asked for with inputs that would weaken or break it (permanent)."""
