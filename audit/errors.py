"""One error hierarchy for the audit package.

Every error the package raises is an :class:`AuditError`. The retry rule lives in
the type: :class:`TemporaryError` carries ``delay`` (seconds a caller should wait
before retrying: the HTTP service maps it to 503 with Retry-After); everything else
is permanent. Errors from SQLite or PostgreSQL are translated at the store boundary
with ``raise ... from e`` and their messages trimmed.
"""

from __future__ import annotations

__all__ = [
    "AuditError",
    "ConfigError",
    "DuplicateIdError",
    "EventError",
    "InconsistentCheckpointError",
    "IntegrityError",
    "KeyFileError",
    "NoteError",
    "ProofError",
    "StoreError",
    "TemporaryError",
]


class AuditError(Exception):
    """Base of every error raised by :mod:`audit`."""


class EventError(AuditError, ValueError):
    """An event (or a line of input) is not acceptable; nothing of it was appended.

    ``field`` names the offending field (``None`` when the whole input is wrong, for
    example malformed JSON); ``line`` is the 1-based input line when known.
    """

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None):
        self.field = field
        self.line = line
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.reason}" if prefix else self.reason

    def at_line(self, line: int) -> EventError:
        """The same error, located at input line ``line``."""
        return EventError(self.reason, field=self.field, line=line)


class ConfigError(AuditError, ValueError):
    """A store URL, option or key is unusable (a user mistake, exit code 2)."""


class KeyFileError(ConfigError):
    """A signing key file is missing, unreadable, malformed or too widely readable."""


class NoteError(AuditError, ValueError):
    """A signed note or checkpoint is malformed, or its signature does not verify."""


class ProofError(AuditError):
    """An inclusion or consistency proof does not verify, or cannot be built."""


class InconsistentCheckpointError(AuditError):
    """The log refused to sign a checkpoint inconsistent with one it signed before."""


class IntegrityError(AuditError):
    """The stored log is not what its own hashes and signatures say it is.

    ``index`` is the first entry index known to be bad, when it can be localised.
    """

    def __init__(self, message: str, *, index: int | None = None):
        self.index = index
        super().__init__(message)


class StoreError(AuditError):
    """The store refused or failed an operation (permanent: retrying will not help)."""


class DuplicateIdError(StoreError):
    """An insert hit an event id already stored (the log then looks the ids up)."""


class TemporaryError(StoreError):
    """The store is busy or unreachable; retry after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float = 1.0):
        self.delay = delay
        super().__init__(message)
