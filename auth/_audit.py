"""The portal's one road to the audit log: ``Auditor.record(...)``.

Every security decision goes through here with ``source="portal"``. The sink is
injected (a Protocol) so the app can be pointed at ``audit``'s client; the local
``FileAuditSink`` appends canonical JSON lines durably and fails closed.
Details must never carry a secret (passwords, codes, TOTP secrets, tokens).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson

from audit import EventError, parse_event
from audit.client import AuditClient, ClientError
from audit.events import action_spec, visible_text

from ._errors import AuditUnavailableError

__all__ = [
    "AuditClientSink",
    "AuditSink",
    "Auditor",
    "FileAuditSink",
    "MemoryAuditSink",
    "open_sink",
]

_FORBIDDEN_DETAIL_KEYS = frozenset({"password", "code", "secret", "token", "otp"})


class AuditSink(Protocol):
    """Where events go. ``emit`` returns only once the event is durable, or raises."""

    def emit(self, event: Mapping[str, Any]) -> None: ...


class FileAuditSink:
    """Append one canonical JSON line per event; ``emit`` returns once it is fsync'd.

    Group commit: concurrent callers share one write + fsync (the first waiting
    caller becomes the leader for everything queued so far), so durability costs
    one fsync per batch rather than per event. If the write fails, every caller in
    that batch gets ``AuditUnavailableError`` (fail closed).
    """

    def __init__(self, *, path: Path) -> None:
        self._path = path
        self._cv = threading.Condition()
        self._queue: list[bytes] = []
        self._queued = 0  # sequence number of the last queued line
        self._durable = 0  # sequence number of the last fsync'd line
        self._failed: list[tuple[int, int]] = []  # (first, last) sequence ranges that failed
        self._leader = False

    def _write(self, lines: list[bytes]) -> None:
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = b"".join(lines)
            while data:
                n = os.write(fd, data)
                data = data[n:]
            os.fsync(fd)
        finally:
            os.close(fd)

    def emit(self, event: Mapping[str, Any]) -> None:
        line = orjson.dumps(dict(event), option=orjson.OPT_SORT_KEYS) + b"\n"
        with self._cv:
            self._queue.append(line)
            self._queued += 1
            mine = self._queued
            while True:
                if any(a <= mine <= b for a, b in self._failed):
                    raise AuditUnavailableError(
                        "The audit log cannot be written; the portal refuses to continue."
                    )
                if self._durable >= mine:
                    return
                if self._leader:
                    self._cv.wait()
                    continue
                self._leader = True
                batch, first, last = self._queue, self._durable + 1, self._queued
                self._queue = []
                self._cv.release()
                error: OSError | None = None
                try:
                    self._write(batch)
                except OSError as e:
                    error = e
                finally:
                    self._cv.acquire()
                    self._leader = False
                if error is None:
                    self._durable = last
                else:
                    self._failed.append((first, last))
                    self._durable = last  # later lines start a new batch
                self._cv.notify_all()


class AuditClientSink:
    """Send events through ``audit``'s client: the audit log proper.

    ``emit`` uses the client's ``record``: it returns only once the event is
    durable (appended to the local store, or fsync'd in the spool of an HTTP
    client), and otherwise raises ``AuditUnavailableError`` so that the portal
    refuses the action it was about to take (fail closed).
    """

    def __init__(self, *, client: AuditClient) -> None:
        self._client = client

    def emit(self, event: Mapping[str, Any]) -> None:
        try:
            self._client.record(event)
        except ClientError as e:
            raise AuditUnavailableError(
                "The audit log cannot be written; the portal refuses to continue."
            ) from e

    def close(self) -> None:
        self._client.close()


def open_sink(
    target: str, *, token_file: Path | None = None, spool: Path | None = None
) -> AuditSink:
    """The sink for an audit target (see ``PortalSettings.audit_target``).

    - ``http://`` / ``https://``: the audit service, through audit's client with a
      durable spool; the intake token is read from ``token_file`` (never argv).
    - ``sqlite:///...`` / ``postgresql://...``: an audit store, appended in-process
      by audit's client (the embedded default, one writer).
    - ``unsafe-jsonl:PATH``: a JSON-lines file, for development and tests only: it
      is not the tamper-evident log, so its name says so and it is warned about.

    Anything else is refused: a mistyped target must never quietly become a file.
    """
    if target.startswith(("http://", "https://")):
        if token_file is None or spool is None:
            raise AuditUnavailableError(
                "Sending to the audit service needs --audit-token-file and --audit-spool."
            )
        try:
            token = token_file.read_text("utf-8").strip()
        except OSError as e:
            raise AuditUnavailableError(
                f"Cannot read the audit token file {token_file}: {e.strerror}."
            ) from None
        if not token:
            raise AuditUnavailableError(f"The audit token file {token_file} is empty.")
        client = AuditClient.http(url=target, token=token, spool_path=spool, source="portal")
        return AuditClientSink(client=client)
    if target.startswith(("sqlite:", "postgresql:", "postgres:")):
        return AuditClientSink(client=AuditClient.local(store_url=target))
    if target.startswith(UNSAFE_JSONL) and len(target) > len(UNSAFE_JSONL):
        logging.getLogger("auth.audit").warning(
            "portal audit events go to a plain JSON-lines file (%s), not the tamper-evident "
            "audit log: for development only",
            target[len(UNSAFE_JSONL) :],
        )
        return FileAuditSink(path=Path(target[len(UNSAFE_JSONL) :]))
    raise AuditUnavailableError(
        f"The audit target {target!r} is not an audit service URL (http[s]://...), an audit "
        f"store URL (sqlite:///..., postgresql://...) or {UNSAFE_JSONL}PATH."
    )


#: The scheme of the development-only JSON-lines audit target.
UNSAFE_JSONL = "unsafe-jsonl:"


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


def _shown(value: Any, max_len: int) -> Any:
    """A detail as the log may hold it: text that came from a request (a path, a
    username as typed) keeps its invisible or bidirectional characters only as
    visible ``\\u202e``-style escapes, which intake accepts and an officer can read;
    cut to the field's length (escaping makes it longer) with a visible ellipsis."""
    if isinstance(value, str):
        text = visible_text(value)
        return text if len(text) <= max_len else text[: max_len - 1] + "…"
    if isinstance(value, list | tuple):
        return [_shown(v, max_len) for v in value]
    return value


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
        spec = action_spec(action)
        fields = spec.fields if spec is not None else {}
        d = {
            k: _shown(v, fields[k].max_len) if k in fields else v
            for k, v in (details or {}).items()
        }
        leaked = _FORBIDDEN_DETAIL_KEYS & set(d)
        if leaked:
            raise ValueError(f"audit details must not carry secrets: {sorted(leaked)}")
        now = self._clock()
        event = {
            "id": str(uuid.uuid4()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + f".{int((now % 1) * 1e6):06d}Z",
            "source": "portal",
            "actor": visible_text(actor),
            "action": action,
            "enclave": enclave,
            "outcome": outcome,
            "client_ip": client_ip,
            "details": d,
        }
        # Every portal event is checked against the audit registry here, at its
        # source: an event the log would refuse is a bug, never a silent loss.
        try:
            parse_event(event)
        except EventError as e:
            raise ValueError(f"portal event {action!r} does not fit the audit registry: {e}") from e
        try:
            self._sink.emit(event)
        except AuditUnavailableError:
            raise
        except OSError as e:
            raise AuditUnavailableError(
                "The audit log cannot be written; the portal refuses to continue."
            ) from e
