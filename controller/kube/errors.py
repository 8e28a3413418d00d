"""The errors of the Kubernetes backend: one root, translated at the boundary.

``InvalidEnclaveError`` is the user's fault (exit 2 / a condition naming the field);
``ClusterError`` wraps what the API server answered, its payload trimmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._schema import Problem

__all__ = ["ClusterError", "ControllerError", "InvalidEnclaveError"]


class ControllerError(Exception):
    """Root of every error raised by ``controller.kube``."""


class InvalidEnclaveError(ControllerError):
    """An Enclave document breaks the schema; ``problems`` names every field at fault."""

    def __init__(self, *, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        first = self.problems[0]
        more = len(self.problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"{source}: {first.field}: {first.message}{tail}.")


class ClusterError(ControllerError):
    """The cluster could not be read or written; the message says what and why."""
