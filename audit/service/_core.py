"""The seam between the service and the core log API (``audit.open_log`` & co).

Everything the service needs from the core goes through these few functions, so the
HTTP layer never depends on the store's internals.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from .._events import visible_text

__all__ = [
    "b64",
    "event_dict",
    "officer_read_event",
    "stored_dict",
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_dict(event: Any) -> dict[str, Any]:
    """An event as a JSON-ready mapping (the fields of DESIGN.md "Audit")."""
    for name in ("to_dict", "as_dict", "model_dump"):
        fn = getattr(event, name, None)
        if callable(fn):
            out = fn()
            if isinstance(out, Mapping):
                return dict(out)
    if dataclasses.is_dataclass(event) and not isinstance(event, type):
        return dataclasses.asdict(event)
    raise TypeError(f"cannot serialise {type(event).__name__}")


def stored_dict(stored: Any) -> dict[str, Any]:
    """A stored event: the leaf's fields (incl. the log's ``received`` time) + ``index``."""
    fn = getattr(stored, "to_dict", None)
    if callable(fn):
        out = fn()
        if isinstance(out, Mapping):
            return dict(out)
    d = event_dict(stored.event)
    d["index"] = stored.index
    d["received"] = stored.received
    return d


def officer_read_event(
    *,
    officer_id: str,
    view: str,
    query: Mapping[str, Any],
    results: int | None,
    client_ip: str | None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """The ``audit.read`` event that records one officer read ("who looked at what")."""
    details: dict[str, Any] = {
        "view": view,
        # invisible characters (an actor stored before intake refused them) as JSON
        # \u escapes: the same JSON value, and an event intake's checks accept
        "query": visible_text(json.dumps(dict(query), sort_keys=True, ensure_ascii=False))[:4096],
    }
    if results is not None:
        details["results"] = results
    if fmt is not None:
        details["format"] = fmt
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "time": now_rfc3339(),
        "source": "audit",
        "actor": officer_id,
        "action": "audit.read",
        "outcome": "success",
        "enclave": None,
        "client_ip": client_ip,
        "details": details,
    }
    return event
