"""The one error hierarchy of ``policies``: every error names the file and key path."""

from __future__ import annotations

__all__ = ["CatalogError", "PolicyError", "UnknownTierError"]


class PolicyError(Exception):
    """Base of every error this package raises; the message is one sentence for a human."""


class CatalogError(PolicyError):
    """A catalog or overlay file is malformed, or would loosen a control.

    ``str()`` is a single line: ``FILE: KEY.PATH: problem``.
    """

    def __init__(self, *, file: str, path: str, problem: str) -> None:
        self.file = file
        self.path = path
        self.problem = problem
        where = f"{file}: {path}" if path else file
        super().__init__(f"{where}: {problem}")


class UnknownTierError(PolicyError, KeyError):
    """A tier id that is not in the catalog."""

    def __init__(self, tier: str, known: tuple[str, ...]) -> None:
        self.tier = tier
        self.known = known
        super().__init__(f"unknown tier {tier!r}; known tiers: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])
