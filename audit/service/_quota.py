"""What one intake token may cost the service: events and bytes per minute, request
bodies in memory at once, and the disk's free space.

Issue #12, item 3: a workspace's token is held by code the researcher wrote. Without
these bounds one token could fill the disk of an append-only store (nothing written can
be removed) or the memory (many large bodies read at once). Each check is made before
the work it protects, and a refusal appends nothing:

1. ``FreeSpaceFloor``: below ``min_free_bytes`` free on the store's file system, intake
   refuses every source except the portal and the controller (503 + Retry-After), so
   that logins, entries and quarantines keep being recorded while space is made.
2. ``BodySlots``: at most ``total`` intake requests hold their body at once (read,
   parsed, or waiting to be appended), and at most ``per_token`` of them for one token
   (503 + Retry-After when none is free; the request waits for nothing).
3. ``TokenQuotas``: per token, a bucket of events and one of bytes, each refilled at
   its per-minute rate and holding at most one minute's worth. A batch takes from both
   or from neither (429 + Retry-After saying when it would fit). A batch bigger than a
   whole minute's worth is let through only when the bucket is full, which it then
   overdraws, so the long-run rate still holds.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ._errors import Backpressure, QuotaExceeded

__all__ = ["PRIORITY_SOURCES", "BodySlots", "FreeSpaceFloor", "Shares", "TokenQuotas"]

#: sources still let in below the free-space floor: what officers need to reconstruct
#: who entered (portal logins and sessions, controller quarantines and expiries)
PRIORITY_SOURCES = frozenset({"portal", "controller"})


@dataclass
class _Bucket:
    level: float
    at: float


class TokenQuotas:
    """Events and bytes per minute for each intake token (keyed by token id).

    Memory is bounded by the number of tokens in the token file: only authenticated
    tokens are ever charged."""

    def __init__(
        self,
        *,
        events_per_minute: int,
        bytes_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if events_per_minute < 1 or bytes_per_minute < 1:
            raise ValueError("intake quotas must be at least 1 per minute")
        self.events_per_minute = events_per_minute
        self.bytes_per_minute = bytes_per_minute
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, _Bucket] = {}
        self._bytes: dict[str, _Bucket] = {}

    @staticmethod
    def _level(table: dict[str, _Bucket], token: str, per_minute: int, now: float) -> _Bucket:
        b = table.get(token)
        if b is None:
            b = table[token] = _Bucket(level=float(per_minute), at=now)
        b.level = min(float(per_minute), b.level + (now - b.at) * per_minute / 60.0)
        b.at = now
        return b

    @staticmethod
    def _wait(b: _Bucket, cost: int, per_minute: int) -> float:
        """Seconds until ``cost`` fits (0: it fits now)."""
        need = min(float(cost), float(per_minute))
        return 0.0 if b.level >= need else (need - b.level) * 60.0 / per_minute

    def check_bytes(self, *, token: str, size: int) -> None:
        """Refuse (without charging) a body that cannot fit now: before reading it."""
        now = self._clock()
        with self._lock:
            b = self._level(self._bytes, token, self.bytes_per_minute, now)
            wait = self._wait(b, size, self.bytes_per_minute)
        if wait > 0:
            raise self._refusal("bytes", self.bytes_per_minute, wait)

    def take(self, *, token: str, events: int, size: int) -> None:
        """Charge a validated batch to ``token``, or refuse it charging nothing."""
        now = self._clock()
        with self._lock:
            be = self._level(self._events, token, self.events_per_minute, now)
            bb = self._level(self._bytes, token, self.bytes_per_minute, now)
            wait_e = self._wait(be, events, self.events_per_minute)
            wait_b = self._wait(bb, size, self.bytes_per_minute)
            if wait_e == 0 and wait_b == 0:
                be.level -= events
                bb.level -= size
                return
        if wait_e >= wait_b:
            raise self._refusal("events", self.events_per_minute, wait_e)
        raise self._refusal("bytes", self.bytes_per_minute, wait_b)

    @staticmethod
    def _refusal(what: str, per_minute: int, wait: float) -> QuotaExceeded:
        return QuotaExceeded(
            f"this token has used its quota of {per_minute} {what} per minute; nothing of "
            "the batch was appended, retry later",
            retry_after=max(1, math.ceil(wait)),
            reason=f"quota_{what}",
        )


class Shares:
    """Places held, in all and per key (an intake token's id); the caller locks.

    Memory is bounded: only keys holding a place are kept."""

    def __init__(self) -> None:
        self.total = 0
        self._by_key: dict[str, int] = {}

    def of(self, key: str) -> int:
        return self._by_key.get(key, 0)

    def take(self, key: str) -> None:
        self.total += 1
        self._by_key[key] = self.of(key) + 1

    def give_back(self, key: str) -> None:
        self.total -= 1
        left = self._by_key[key] - 1
        if left:
            self._by_key[key] = left
        else:
            del self._by_key[key]


class BodySlots:
    """Intake request bodies held at once: in all, and per token."""

    def __init__(self, *, total: int, per_token: int | None, retry_after: int) -> None:
        if total < 1:
            raise ValueError("the number of concurrent request bodies must be at least 1")
        self.total = total
        self.per_token = max(1, total // 4) if per_token is None else per_token
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._held = Shares()

    @property
    def busy(self) -> int:
        return self._held.total

    def acquire(self, token: str) -> None:
        """Take a slot for ``token`` or refuse at once (503 + Retry-After)."""
        with self._lock:
            mine = self._held.of(token)
            if self._held.total >= self.total or mine >= self.per_token:
                share = mine >= self.per_token
                raise Backpressure(
                    (
                        f"this token already has {mine} requests being taken in"
                        if share
                        else "the audit service is taking in as many requests as it may"
                    )
                    + "; nothing of this batch was appended, retry later",
                    retry_after=self._retry_after,
                    reason="busy",
                )
            self._held.take(token)

    def release(self, token: str) -> None:
        with self._lock:
            self._held.give_back(token)


class FreeSpaceFloor:
    """Refuse intake from all but ``PRIORITY_SOURCES`` while the store's file system has
    less than ``min_free_bytes`` free. ``path`` None (a PostgreSQL store, whose disk
    is the database server's) checks nothing."""

    def __init__(self, *, path: Path | None, min_free_bytes: int, retry_after: int) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes
        self._retry_after = retry_after

    def free_bytes(self) -> int | None:
        if self.path is None:
            return None
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return 0  # cannot tell: fail closed, as if the disk were full

    def check(self, *, source: str) -> None:
        if source in PRIORITY_SOURCES or self.path is None or self.min_free_bytes <= 0:
            return
        free = self.free_bytes()
        if free is not None and free < self.min_free_bytes:
            raise Backpressure(
                f"the audit store's disk has {free} bytes free, below the floor of "
                f"{self.min_free_bytes}; only the portal and the controller are let in "
                "until space is made, retry later",
                retry_after=max(self._retry_after, 60),
                reason="disk_low",
            )


def store_directory(store: object) -> Path | None:
    """The directory of a SQLite store's file, or None (PostgreSQL)."""
    path = getattr(store, "path", None)
    return Path(os.fspath(path)).parent if isinstance(path, Path) else None
