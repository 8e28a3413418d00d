"""The audit event model and the action registry (public re-exports)."""

from __future__ import annotations

from ._actions import ACTIONS, ActionSpec, DetailField, action_spec
from ._events import (
    EVENT_FIELDS,
    MAX_EVENT_BYTES,
    OUTCOMES,
    SOURCES,
    Event,
    StoredEvent,
    encode_leaf,
    jcs,
    parse_event,
    parse_leaf,
    utc_now,
    visible_text,
)

__all__ = [
    "ACTIONS",
    "EVENT_FIELDS",
    "MAX_EVENT_BYTES",
    "OUTCOMES",
    "SOURCES",
    "ActionSpec",
    "DetailField",
    "Event",
    "StoredEvent",
    "action_spec",
    "encode_leaf",
    "jcs",
    "parse_event",
    "parse_leaf",
    "utc_now",
    "visible_text",
]
