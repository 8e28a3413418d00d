"""The workspace layer's one error hierarchy."""

from __future__ import annotations

__all__ = ["SpecError", "WorkspaceError"]


class WorkspaceError(Exception):
    """Base of every error this package raises on purpose."""


class SpecError(WorkspaceError):
    """An Enclave spec or site setting is unusable: one sentence naming the field."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field
