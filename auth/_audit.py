"""The portal's one road to the audit log: ``Auditor.record(...)``.

Every security decision goes through here with ``source="portal"``. The sink is
injected (a Protocol) so the app can be pointed at ``audit``'s client; the local
``FileAuditSink`` appends canonical JSON lines durably and fails closed.
Details must never carry a secret (passwords, codes, TOTP secrets, tokens).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from ._errors import AuditUnavailableError

__all__ = ["AuditSink", "Auditor", "FileAuditSink", "MemoryAuditSink"]

_FORBIDDEN_DETAIL_KEYS = frozenset({"password", "code", "secret", "token", "otp"})


class AuditSink(Protocol):
    """Where events go. ``emit`` returns only once the event is durable, or raises."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


class FileAuditSink:
    """Append one canonical JSON line per event, fsync'd before returning."""

    def __init__(self, *, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def emit(self, event: Mapping[str, Any]) -> None:
        line = orjson.dumps(dict(event), option=orjson.OPT_SORT_KEYS) + b"\n"
        with self._lock:
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as e:
                raise AuditUnavailableError(
                    "The audit log cannot be written; the portal refuses to continue."
                ) from e


class MemoryAuditSink:
    """Keeps events in a list; for tests that assert what a flow recorded."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            self.events.append(dict(event))

    def actions(self) -> list[str]:
        return [str(e["action"]) for e in self.events]


class Auditor:
    """Builds portal events and hands them to the sink; raises if it cannot."""

    def __init__(self, *, sink: AuditSink, clock: Callable[[], float] = time.time) -> None:
        self._sink = sink
        self._clock = clock

    def record(
        self,
        *,
        action: str,
        actor: str,
        outcome: str,
        enclave: str | None = None,
        client_ip: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        d = dict(details or {})
        leaked = _FORBIDDEN_DETAIL_KEYS & set(d)
        if leaked:
            raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
        now = self._clock()
        event = {
            "id": str(uuid.uuid4()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int((now % 1) * 1e6):06d}Z",
            "source": "portal",
            "actor": actor,
            "action": action,
            "enclave": enclave,
            "outcome": outcome,
            "client_ip": client_ip,
            "details": d,
        }
        try:
            self._sink.emit(event)
        except AuditUnavailableError:
            raise
        except OSError as e:
            raise AuditUnavailableError(
                "The audit log cannot be written; the portal refuses to continue."
            ) from e
