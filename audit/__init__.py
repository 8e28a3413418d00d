"""The tamper-evident audit log: store, RFC 9162 Merkle tree, signed C2SP checkpoints.

Called by every other component (portal, controller, hub, workspace) through this
API or the audit service; only this package writes the audit store. It must never
update or delete an entry once acknowledged, and never sign two inconsistent
checkpoints.
"""

from __future__ import annotations

from ._merkle import leaf_hash, verify_consistency, verify_inclusion
from ._note import Checkpoint, Signer, Verifier, parse_checkpoint
from ._store import Query
from ._verify import VerifyReport, verify_store
from .errors import (
    AuditError,
    ConfigError,
    EventError,
    InconsistentCheckpointError,
    IntegrityError,
    KeyFileError,
    NoteError,
    ProofError,
    StoreError,
    TemporaryError,
)
from .events import ACTIONS, MAX_EVENT_BYTES, Event, StoredEvent, parse_event
from .log import AuditLog, TreeHead, open_log

__all__ = [
    "ACTIONS",
    "MAX_EVENT_BYTES",
    "AuditError",
    "AuditLog",
    "Checkpoint",
    "ConfigError",
    "Event",
    "EventError",
    "InconsistentCheckpointError",
    "IntegrityError",
    "KeyFileError",
    "NoteError",
    "ProofError",
    "Query",
    "Signer",
    "StoreError",
    "StoredEvent",
    "TemporaryError",
    "TreeHead",
    "Verifier",
    "VerifyReport",
    "leaf_hash",
    "open_log",
    "parse_checkpoint",
    "parse_event",
    "verify_consistency",
    "verify_inclusion",
    "verify_store",
]
