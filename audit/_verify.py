"""Offline verification of a whole log (an fsck): one streaming pass, constant memory.

Procedure (what ``enclave audit verify`` does):

1. Open every stored checkpoint with the trusted verifier keys (``--key``, else the
   keys recorded in the store): each signature must verify, its text must parse as a
   tlog-checkpoint, and its size and root must equal the row's stored columns; sizes
   never decrease from one checkpoint to the next. Keys recorded in the store prove
   nothing against whoever can write the store (they can add their own key and
   re-sign a rewritten history): the report says when those were the only keys.
2. If an earlier checkpoint is given (``--against``), open it the same way; the log
   must have at least its size.
3. Read the entries in index order, in chunks. For each entry: the index is the next
   one expected (no gap); the leaf is canonical JSON; the stored leaf hash equals
   ``SHA-256(0x00 || leaf)``; every derived column (event id, time, source, actor,
   action, enclave, outcome) equals the leaf's value.
4. Rebuild the tree as entries pass: every full tile recomputed is compared with the
   stored one (the first differing hash locates the bad entry); at every size where a
   tree head, a checkpoint or the ``--against`` checkpoint exists, the recomputed root
   must equal theirs.
5. Afterwards: no stored tile, tree head or checkpoint may lie beyond the entries (a
   truncated tail); the ``--against`` size must have been reached.

The result names the first bad index when a problem can be localised to an entry;
a root mismatch with intact hashes can only be localised to the range since the last
root that matched.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import multiprocessing
import operator
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from ._events import time_ns as event_time_ns
from ._merkle import EMPTY_ROOT
from ._note import Checkpoint, Verifier, parse_checkpoint
from ._store import UNIT_PACKING, Store
from .errors import AuditError, NoteError

try:
    from . import _speedups
except ImportError:  # not built (no C compiler at install): the same checks in Python
    _speedups = None  # type: ignore[assignment]

__all__ = ["VerifyReport", "unpack_columns", "verify_store"]

_TILE = 256
_MAX_PROBLEMS = 20
_log = structlog.get_logger("audit.verify")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    """The outcome of a verification. ``ok`` iff ``problems`` is empty."""

    ok: bool
    entries: int
    first_bad_index: int | None
    problems: tuple[str, ...]
    checkpoints: int
    root_hash: bytes
    against: Checkpoint | None = None
    pending: int = 0
    """Entries sequenced but not yet integrated when verification began: their leaves
    and columns were checked; tiles, index rows and roots do not cover them yet."""
    keys_from_store: bool = False
    """No trusted verifier key was given: signatures were checked only against the keys
    the store itself records, which whoever can write the store can replace."""

    @property
    def summary(self) -> str:
        """One line for humans."""
        if self.ok:
            extra = f", extends checkpoint at size {self.against.size}" if self.against else ""
            if self.pending:
                extra += f" ({self.pending} newest entries not integrated yet: leaves checked)"
            if self.keys_from_store:
                extra += STORE_KEYS_ONLY
            return f"OK: {self.entries} entries, {self.checkpoints} checkpoints verified{extra}"
        where = f" at index {self.first_bad_index}" if self.first_bad_index is not None else ""
        return f"FAILED{where}: {self.problems[0]}"


@dataclass
class _State:
    problems: list[tuple[str, int | None]] = field(default_factory=list)
    ranges: list[tuple[str, int, int]] = field(default_factory=list)  # bad_range calls
    first_exact: int | None = None  # an entry shown bad by its own hashes or columns
    first_range: int | None = None  # the start of a range a root mismatch points at
    last_good_size: int = 0
    last_good_signed: int = 0

    def bad_range(self, msg: str, lo: int, size: int) -> None:
        """A root mismatch: some entry in ``lo..size-1`` is bad, unless one is known already."""
        if len(self.ranges) < _MAX_PROBLEMS:  # later ones start later: bounded memory
            self.ranges.append((msg, lo, size))
        explained = self.first_exact is not None and self.first_exact < size
        self._add(msg, None if explained else lo)
        if not explained and (self.first_range is None or lo < self.first_range):
            self.first_range = lo

    def bad(self, msg: str, index: int | None) -> None:
        self._add(msg, index)
        if index is not None and (self.first_exact is None or index < self.first_exact):
            self.first_exact = index

    def _add(self, msg: str, index: int | None) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append((msg, index))

    @property
    def first_bad(self) -> int | None:
        """The exact first bad entry if one was found, else the start of the suspect range."""
        return self.first_exact if self.first_exact is not None else self.first_range

    def ordered(self) -> tuple[str, ...]:
        """Problems, the one naming the reported index first."""
        first = self.first_bad
        lead = [m for m, i in self.problems if i == first and first is not None][:1]
        return tuple(lead + [m for m, _ in self.problems if not lead or m != lead[0]])


class _Level:
    """One tile level during verification: its pending nodes and their compact range."""

    __slots__ = ("nodes", "stack")

    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.stack: list[bytes] = []

    def add(self, h: bytes) -> None:
        n = len(self.nodes)
        self.nodes.append(h)
        stack = self.stack
        stack.append(h)
        while n & 1:
            r = stack.pop()
            stack[-1] = hashlib.sha256(b"\x01" + stack[-1] + r).digest()
            n >>= 1

    def root(self) -> bytes:
        assert len(self.stack) == 1
        return self.stack[0]

    def reset(self) -> None:
        self.nodes = []
        self.stack = []


def _heads(store: Store) -> Iterator[tuple[int, bytes]]:
    after = -1
    while True:
        rows = store.heads(after=after, limit=10_000)
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def _checkpoints(store: Store) -> Iterator[tuple[int, int, bytes, str, str]]:
    after = -1
    while True:
        rows = store.checkpoints(after_seq=after, limit=1000)
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def verify_store(
    store: Store,
    *,
    verifiers: Sequence[Verifier] | None = None,
    against: str | bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk: int | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify everything stored in ``store``; see the module docstring for the steps.

    Everything is read inside one read-only snapshot of the store (see
    :meth:`Store.snapshot`), so writers may go on appending, integrating and signing
    meanwhile: the verdict is about the log as it stood when the snapshot began.
    Entries sequenced but not yet integrated then are checked as far as they can be
    (leaf hash, canonical JSON, columns) and counted in ``VerifyReport.pending``.

    Entries are scanned in independent segments of 65,536 (one level-1 tile); with
    ``workers`` > 1 (default: :data:`DEFAULT_WORKERS` on logs of more than two segments,
    at most the machine's cores) they are scanned in that many worker processes (forked
    in a single-threaded program, else spawned, when the calling program's main module
    must be import-safe; see :func:`_start_method`), which open
    the store themselves and read the same snapshot (PostgreSQL) or a later one bounded
    to the same sizes (SQLite, whose committed rows cannot change: append-only);
    results are combined here in order. Memory stays bounded.
    """
    if chunk is None:
        chunk = store.verify_chunk
    if _speedups is None:
        _log.warning(
            "audit_verify_not_compiled",
            hint="audit._speedups (verify's compiled fast path) is not built: verifying "
            "in Python, two to three times slower; reinstall with a C compiler and the "
            "Python and OpenSSL headers to build it",
        )
    with store.snapshot() as share:
        return _verify_snapshot(
            store,
            share=share,
            verifiers=verifiers,
            against=against,
            progress=progress,
            chunk=chunk,
            workers=workers,
        )


def _verify_snapshot(
    store: Store,
    *,
    share: str | None,
    verifiers: Sequence[Verifier] | None,
    against: str | bytes | None,
    progress: Callable[[int, int], None] | None,
    chunk: int,
    workers: int | None,
) -> VerifyReport:
    st = _State()
    keys_from_store = verifiers is None
    if verifiers is None:
        try:
            verifiers = [Verifier.parse(k) for k in store.verifier_keys()]
        except NoteError as e:
            st.bad(f"a verifier key recorded in the store is malformed: {e}", None)
            verifiers = []
    head_it = _heads(store)
    cp_it = _checkpoints(store)

    # step 1: checkpoints (signatures now, roots during the stream)
    cp_expect: list[tuple[int, bytes, str]] = []
    n_cp = 0
    prev_size = -1
    for seq, size, root, note, _created in cp_it:
        n_cp += 1
        label = f"checkpoint #{seq} (size {size})"
        try:
            cp = parse_checkpoint(note, verifiers)
        except NoteError as e:
            st.bad(f"{label}: signature or format invalid: {e}", None)
            continue
        if cp.size != size or not hmac.compare_digest(cp.root_hash, root):
            st.bad(f"{label}: stored size/root columns differ from the signed note", None)
        if cp.size < prev_size:
            st.bad(f"{label}: size is smaller than the previous checkpoint's ({prev_size})", None)
        prev_size = max(prev_size, cp.size)
        cp_expect.append((cp.size, cp.root_hash, label))
        if len(cp_expect) > 100_000:
            st.bad("more than 100000 checkpoints: verify the newest with --against instead", None)
            break
    cp_expect.sort(key=lambda t: t[0])
    integrated = store.latest_head()
    integrated_size = integrated[0] if integrated else 0
    total = store.size()
    for size, _, label in cp_expect:
        if size > total:
            st.bad(
                f"{label} covers {size} entries but the log has {total}: entries were removed",
                total,
            )

    # step 2: --against
    against_cp: Checkpoint | None = None
    if against is not None:
        try:
            against_cp = parse_checkpoint(against, verifiers)
        except NoteError as e:
            st.bad(f"the --against checkpoint does not verify with the trusted key: {e}", None)
        else:
            if against_cp.size > total:
                st.bad(
                    f"the log has {total} entries but the earlier checkpoint covers "
                    f"{against_cp.size}: "
                    "the tail was truncated",
                    total,
                )
            cp_expect.append(
                (
                    against_cp.size,
                    against_cp.root_hash,
                    f"--against checkpoint (size {against_cp.size})",
                )
            )
            cp_expect.sort(key=lambda t: t[0])

    if cp_expect and cp_expect[0][0] == 0:
        for _, root, label in [c for c in cp_expect if c[0] == 0]:
            if not hmac.compare_digest(root, EMPTY_ROOT):
                st.bad(f"{label}: root of the empty tree is wrong", None)
        cp_expect = [c for c in cp_expect if c[0] != 0]
    cp_pos = 0
    next_head = next(head_it, None)
    while next_head is not None and next_head[0] == 0:
        next_head = next(head_it, None)

    # steps 3 and 4, segment by segment (in worker processes for big logs)
    upper: list[_Level] = [_Level(), _Level(), _Level()]  # tile levels >= 2 live here
    stored = _TileCache(store)
    last_stack: list[bytes] = []

    def upper_push(level: int, h: bytes, node_idx: int) -> None:
        """Add node ``node_idx`` of tree height 8*level; check the tile it completes."""
        while len(upper) <= level:
            upper.append(_Level())
        lv = upper[level]
        lv.add(h)
        if len(lv.nodes) == _TILE:
            tile_idx = node_idx // _TILE
            if (tile_idx + 1) * _TILE ** (level + 1) <= integrated_size:
                _check_tile(st, stored, level, tile_idx, lv.nodes)
            root = lv.root()
            lv.reset()
            upper_push(level + 1, root, tile_idx)

    def root_at(seg_stack: Sequence[bytes]) -> bytes:
        stack = [h for lv in reversed(upper[2:]) for h in lv.stack] + list(seg_stack)
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = hashlib.sha256(b"\x01" + h + r).digest()
        return r

    def check_root(size: int, root: bytes) -> None:
        nonlocal next_head, cp_pos
        while next_head is not None and next_head[0] < size:
            next_head = next(head_it, None)
        while cp_pos < len(cp_expect) and cp_expect[cp_pos][0] < size:
            cp_pos += 1
        while next_head is not None and next_head[0] == size:
            if not hmac.compare_digest(root, next_head[1]):
                st.bad_range(
                    f"tree head at size {size} does not match the entries: the head, or some "
                    f"entry in {st.last_good_size}..{size - 1}, was altered",
                    st.last_good_size,
                    size,
                )
            else:
                st.last_good_size = size
            next_head = next(head_it, None)
        while cp_pos < len(cp_expect) and cp_expect[cp_pos][0] == size:
            _, want, label = cp_expect[cp_pos]
            if hmac.compare_digest(root, want):
                st.last_good_size = size
                if not label.startswith("--against"):
                    st.last_good_signed = size
            elif label.startswith("--against"):
                st.bad(
                    f"the log does not extend the {label}: its history before that size was "
                    "rewritten (a fork); which entry differs cannot be told from a root alone",
                    None,
                )
            else:
                st.bad_range(
                    f"{label} does not match the entries: some entry in "
                    f"{st.last_good_signed}..{size - 1} was altered after it was signed",
                    st.last_good_signed,
                    size,
                )
            cp_pos += 1

    # Which sizes need a root: every tree head and checkpoint, read a window at a time.
    head_sizes = _heads(store)
    pending_head = next(head_sizes, None)

    def sizes_in(start: int, end: int) -> tuple[int, ...]:
        nonlocal pending_head
        out: list[int] = []
        while pending_head is not None and pending_head[0] <= end:
            if pending_head[0] > start:
                out.append(pending_head[0])
            pending_head = next(head_sizes, None)
        out += [c[0] for c in cp_expect if start < c[0] <= end]
        return tuple(sorted(set(out)))

    segments = [(s0, min(total, s0 + SEGMENT)) for s0 in range(0, total, SEGMENT)]
    jobs = [(s0, s1, integrated_size, chunk) for s0, s1 in segments]
    if total < integrated_size:
        st.bad(
            f"the latest tree head covers {integrated_size} entries but the log has {total}: "
            "entries were removed",
            total,
        )
    if workers is None:  # the default: both cores of a small machine, on a big log
        workers = min(DEFAULT_WORKERS, os.cpu_count() or 1) if total > 2 * SEGMENT else 1
    n_workers = workers if len(jobs) > 1 else 1
    url = getattr(store, "open_url", None)
    if n_workers > 1 and url is None:
        n_workers = 1
    for (s0, s1, *_), result in _run_segments(store, url, share, jobs, sizes_in, n_workers):
        for msg, idx in result.problems:
            st.bad(msg, idx)
        for msg, lo, end in result.ranges:
            st.bad_range(msg, lo, end)
        for size, seg_stack in result.stacks:
            check_root(size, root_at(seg_stack))
        if s1 - s0 == SEGMENT:
            upper_push(2, result.stacks_final[0], s0 // SEGMENT)
        else:
            last_stack = result.stacks_final
        if progress is not None:
            progress(s1, total)

    # step 5 (in the same snapshot: nothing a writer did since can show here)
    rows_n, index_end = store.index_count()
    if rows_n != index_end or index_end > integrated_size:
        st.bad(
            f"the query index has {rows_n} rows up to index {index_end} for an integrated size "
            f"of {integrated_size}",
            min(index_end, integrated_size) if index_end > integrated_size else None,
        )
    for level, count in sorted(store.tile_levels().items()):
        covered = count * _TILE ** (level + 1)
        if covered > total:
            st.bad(
                f"stored tiles at level {level} cover more entries than the log has: "
                "the tail was removed",
                total,
            )
        elif covered > integrated_size:
            st.bad(
                f"stored tiles at level {level} cover {covered} entries but the latest tree "
                f"head only {integrated_size}: tree heads were removed",
                None,
            )
    while next_head is not None:
        if next_head[0] > total:
            st.bad(
                f"tree head at size {next_head[0]} but the log has only {total} entries: "
                "the tail was removed",
                total,
            )
            break
        next_head = next(head_it, None)
    return VerifyReport(
        ok=not st.problems,
        entries=total,
        first_bad_index=st.first_bad,
        problems=st.ordered(),
        checkpoints=n_cp,
        root_hash=root_at(last_stack),
        against=against_cp,
        pending=max(0, total - integrated_size),
        keys_from_store=keys_from_store,
    )


STORE_KEYS_ONLY = (
    "; but only against verifier keys recorded in the store itself, which whoever can "
    "write the store can replace: check with the log's verifier key kept elsewhere "
    "(enclave audit verify --key)"
)
"""What an OK summary adds when no trusted key was given (``keys_from_store``)."""
SEGMENT = _TILE * _TILE
"""Entries per unit of work: one level-1 tile (aligned, so segments are independent)."""
DEFAULT_WORKERS = 2
"""Worker processes when ``workers`` is not given (logs over two segments only; never
more than the machine's cores)."""
_BATCH = 128
"""Rows checked together by the fast path (measured best among 64..20,000)."""
_COLUMN_FIELDS = ("id", "source", "actor", "action", "enclave", "outcome")
"""The event fields stored as the columns of Store.VERIFY_COLUMNS, in that order."""


@dataclass
class _Segment:
    """What one segment's scan found: problems, and compact ranges at requested sizes."""

    problems: list[tuple[str, int | None]]  # exact: the entry at the index is bad
    ranges: list[tuple[str, int, int]]  # some entry in [lo, end) or a stored hash is bad
    stacks: list[tuple[int, list[bytes]]]  # (size, compact range of [start, size))
    stacks_final: list[bytes]  # compact range of the whole segment
    expected_end: int


class _TileCache:
    """Stored tiles read ahead in small ranges (level 0) or one by one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cache: dict[int, dict[int, bytes]] = {}

    def get(self, level: int, idx: int) -> bytes | None:
        cache = self.cache.setdefault(level, {})
        if idx not in cache:
            cache.clear()
            span = 64 if level == 0 else 1
            for t in self.store.tiles(level, idx, idx + span):
                cache[t.idx] = t.hashes
            for i in range(idx, idx + span):
                cache.setdefault(i, b"")
        return cache[idx] or None


def _check_tile(
    st: _State, tiles: _TileCache, level: int, tile_idx: int, nodes: list[bytes]
) -> None:
    got = tiles.get(level, tile_idx)
    if got is None:
        st.bad(f"tile at level {level}, index {tile_idx} is missing from the store", None)
    elif got != b"".join(nodes):
        span = _TILE**level
        for j in range(_TILE):
            if got[j * 32 : (j + 1) * 32] != nodes[j]:
                first = (tile_idx * _TILE + j) * span
                msg = (
                    f"stored tile hash (level {level}, node {tile_idx * _TILE + j}) differs "
                    f"from the hash recomputed from entries {first}..{first + span - 1}"
                )
                if span == 1:
                    st.bad(msg, first)
                else:  # the stored hash, or one of the entries it covers, was altered
                    st.bad_range(msg, first, first + span)
                break


def _tile_levels(items: list[bytes]) -> list[list[bytes]]:
    """``[items, parents, ...]``: the nodes of every perfect subtree over ``items``, one
    list per height up to a tile's root (a trailing odd node has no parent yet).
    (``_speedups.tile_levels`` computes the same, compiled.)"""
    sha256 = hashlib.sha256
    out = [items]
    level = items
    for _ in range(8):
        it = iter(level)
        level = [sha256(b"\x01" + a + b).digest() for a, b in zip(it, it, strict=False)]
        out.append(level)
    return out


def _compact(levels: list[list[bytes]], k: int) -> list[bytes]:
    """The compact range (perfect subtree roots, left to right) of the first ``k`` items."""
    out: list[bytes] = []
    lo = 0
    for b in range(k.bit_length() - 1, -1, -1):
        if k >> b & 1:
            out.append(levels[b][lo >> b])
            lo += 1 << b
    return out


class _TimeParser:
    """``time_ns`` with a per-day and per-minute cache for the common shapes
    (``...:SSZ`` and ``...:SS.fffZ``); anything else goes through the strict parser.
    (A leaf's time only has to agree with its stored column here; the leaf itself is
    covered by its hash.) ``many`` parses a batch with one C-level pass per step when
    every time in it has the same shape, and agrees with the strict parser on every
    input, like a call per time does."""

    __slots__ = ("_day_ns", "_minute_ns", "_shapes")

    _DIGITS = frozenset("0123456789")
    _KEY = operator.itemgetter(slice(0, 17))  # YYYY-MM-DDTHH:MM:
    _SECONDS = operator.itemgetter(slice(17, 19))

    def __init__(self) -> None:
        self._minute_ns: dict[str, int] = {}
        self._day_ns: dict[str, int] = {}
        self._shapes: dict[int, re.Pattern[str]] = {}

    def _minute(self, key: str) -> int:
        """``key`` is ``YYYY-MM-DDTHH:MM:``; the day goes through the strict parser once."""
        day_ns = self._day_ns
        day = day_ns.get(key[:11])
        if day is None:
            if len(day_ns) > 10_000:
                day_ns.clear()
            day = day_ns[key[:11]] = event_time_ns(key[:11] + "00:00:00Z")
        hh, mm = key[11:13], key[14:16]
        if key[13] != ":" or key[16] != ":" or not self._DIGITS.issuperset(hh + mm):
            return event_time_ns(key + "00Z")  # raises: not RFC 3339
        if int(hh) > 23 or int(mm) > 59:
            return event_time_ns(key + "00Z")  # raises: not a valid time
        return day + int(hh) * 3_600_000_000_000 + int(mm) * 60_000_000_000

    def _base(self, key: str) -> int:
        base = self._minute_ns.get(key)
        if base is None:
            if len(self._minute_ns) > 100_000:
                self._minute_ns.clear()
            base = self._minute_ns[key] = self._minute(key)
        return base

    def __call__(self, t: str) -> int:
        n = len(t)
        if n >= 20 and t[-1] == "Z" and "0" <= t[17] <= "5" and "0" <= t[18] <= "9":
            frac = 0
            if n > 20:
                f = t[20:-1]
                if t[19] != "." or not (f.isascii() and f.isdigit()) or len(f) > 9:
                    return event_time_ns(t)
                frac = int(f.ljust(9, "0"))
            elif t[19] != "Z":
                return event_time_ns(t)
            return self._base(t[:17]) + int(t[17:19]) * 1_000_000_000 + frac
        return event_time_ns(t)

    def _shape(self, n: int) -> re.Pattern[str] | None:
        """The pattern of ``n`` times of length ``n``, one per line, or None if no
        RFC 3339 time the fast path handles has that length."""
        if n != 20 and not 22 <= n <= 30:
            return None
        p = self._shapes.get(n)
        if p is None:
            frac = "" if n == 20 else r"\." + "[0-9]" * (n - 21)
            one = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
            one += frac + "Z"
            p = self._shapes[n] = re.compile(f"{one}(?:\n{one})*")
        return p

    def many(self, ts: list[str]) -> list[int]:
        """``[self(t) for t in ts]``, computed a step at a time over the whole batch
        when every time has one shape (the pattern checks each digit's place and the
        hour, minute and second ranges; the strict parser checks each new day)."""
        lengths = set(map(len, ts))
        shape = self._shape(lengths.pop()) if len(lengths) == 1 else None
        if shape is None or shape.fullmatch("\n".join(ts)) is None:
            return list(map(self, ts))
        keys = list(map(self._KEY, ts))
        cached = self._minute_ns
        try:
            bases = list(map(cached.__getitem__, keys))
        except KeyError:  # a minute not seen yet: cache the batch's new ones, then again
            for key in set(keys).difference(cached):
                self._base(key)
            try:
                bases = list(map(cached.__getitem__, keys))
            except KeyError:  # the cache was cleared meanwhile (it is bounded)
                bases = list(map(self._base, keys))
        out = list(map(operator.add, bases, map(_SECOND.__mul__, map(int, map(self._SECONDS, ts)))))
        n = len(ts[0]) if ts else 20
        if n > 20:
            fraction = operator.itemgetter(slice(20, n - 1))
            scale = 10 ** (30 - n)  # n - 21 digits of a fraction of a second
            out = list(map(operator.add, out, map(scale.__mul__, map(int, map(fraction, ts)))))
        return out


_SECOND = 1_000_000_000


def _scan_segment(
    store: Store, start: int, end: int, integrated_size: int, chunk: int, sizes: tuple[int, ...]
) -> _Segment:
    """Step 3 and the tile part of step 4 for entries ``[start, end)``.

    Rows are checked in batches of :data:`_BATCH`: contiguous indexes, leaf hashes,
    canonical JSON, columns, index rows. First by the compiled module
    (``_speedups.check_batch``), which passes a batch only if the checks below would;
    else by one operation per check over the whole batch (``map`` and list comparisons
    run in C, not one interpreted step per entry). Only a batch that fails some check
    is walked entry by entry (:func:`_check_rows`) to name exactly which entries are
    bad; all three paths apply the same definitions. Small
    batches (and chunks) keep the working set in the CPU caches: with 20,000 rows at a
    time the same work measured twice as slow.

    Leaf hashes of a level-0 tile are collected and hashed level by level when the tile
    is full (its 255 interior hashes, as the tile's own root needs anyway); level-1 tile
    roots go into an incremental compact range. The compact range at a requested size
    is taken from the levels of the tile it falls in."""
    st = _State()
    tiles = _TileCache(store)
    level1 = _Level()
    sha256 = hashlib.sha256
    loads = orjson.loads
    dumps = orjson.dumps
    canonical = functools.partial(dumps, option=orjson.OPT_SORT_KEYS)
    check_batch = _speedups.check_batch if _speedups is not None else None
    tile_levels = _speedups.tile_levels if _speedups is not None else _tile_levels
    time_field = operator.itemgetter("time")
    time_of = _TimeParser()
    wanted = sorted(set(sizes))
    stacks: list[tuple[int, list[bytes]]] = []
    marks: list[tuple[int, int, list[bytes]]] = []  # (size, items in tile, level-1 stack)
    hashes: list[bytes] = []

    def flush(last_idx: int) -> None:
        """Close the current level-0 tile (full, or the partial one at the segment end)."""
        nonlocal hashes
        levels = tile_levels(hashes)
        for size, k, l1 in marks:
            stacks.append((size, l1 + _compact(levels, k)))
        marks.clear()
        if len(hashes) == _TILE:
            t0 = last_idx // _TILE
            if last_idx < integrated_size:  # tiles are written at integration
                _check_tile(st, tiles, 0, t0, hashes)
            level1.add(levels[8][0])
            if len(level1.nodes) == _TILE and last_idx < integrated_size:
                _check_tile(st, tiles, 1, t0 // _TILE, level1.nodes)
            hashes = []

    def add(hs: list[bytes], first: int) -> None:
        """Add the leaf hashes of entries ``first, first+1, ...``, tile by tile."""
        i = 0
        while i < len(hs):
            part = hs[i : i + _TILE - len(hashes)]
            lo = first + i
            hi = lo + len(part)
            # the compact range at a requested size is taken when its tile closes
            for size in wanted[bisect.bisect_right(wanted, lo) : bisect.bisect_right(wanted, hi)]:
                marks.append((size, len(hashes) + size - lo, list(level1.stack)))
            hashes.extend(part)
            i += len(part)
            if len(hashes) == _TILE:
                flush(hi - 1)

    expected_idx = start
    pos = start
    while pos < end:
        stop = min(end, pos + chunk)
        rows = store.verify_rows(pos, stop)
        if not rows:
            st.bad(f"entries {pos}..{stop - 1} are missing", pos)
            pos = stop
            continue
        for b in range(0, len(rows), _BATCH):
            batch = rows[b : b + _BATCH]
            first = expected_idx
            if check_batch is not None:  # compiled: the same checks (see _speedups)
                fast = check_batch(batch, first, integrated_size)
                if fast is not None:
                    add(fast, first)
                    expected_idx = first + len(batch)
                    continue
            idxs, stored_hashes, leaves, times_ns, indexed, *columns = zip(*batch, strict=True)
            try:
                hs = [sha256(b"\x00" + leaf).digest() for leaf in leaves]
                events = list(map(loads, leaves))
                ok = (
                    idxs[0] == first  # indexes are unique and ordered: so first, last
                    and idxs[-1] == first + len(idxs) - 1  # and count say contiguous
                    and tuple(hs) == stored_hashes
                    # one canonical array for the batch: its elements are the leaves iff it
                    # equals their join (each leaf parsed as one value above)
                    and canonical(events) == b"[" + b",".join(leaves) + b"]"
                    and tuple(time_of.many(list(map(time_field, events)))) == times_ns
                    and _columns_equal(events, columns)
                    and all(indexed[: max(0, integrated_size - first)])
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, AuditError):
                ok = False
            if ok:
                add(hs, first)
                expected_idx = first + len(batch)
            else:
                expected_idx = _check_rows(
                    st, batch, first, integrated_size, time_of, add, store.entry_columns
                )
        pos = stop
    if expected_idx < end:
        st.bad(f"entries from {expected_idx} are missing", expected_idx)
    partial = list(hashes)
    flush(expected_idx - 1)
    final = list(level1.stack) + _compact(tile_levels(partial), len(partial))
    if len(level1.nodes) == _TILE:
        final = [level1.root()]
    return _Segment(
        problems=[p for p in st.problems if p[0] not in {r[0] for r in st.ranges}],
        ranges=st.ranges,
        stacks=stacks,
        stacks_final=final,
        expected_end=expected_idx,
    )


_COLUMN_VALUES = operator.itemgetter(*_COLUMN_FIELDS)


def unpack_columns(packed: object) -> list[Any] | None:
    """The six stored text columns from the packed value of a ``verify_rows`` row, or
    None when they cannot be read back exactly from it: a JSON array (bytes) that is not
    six values, a :data:`~audit._store.UNIT_PACKING` str in which some value holds a
    U+001F itself, or NULL. The caller then reads the columns as they are
    (:meth:`Store.entry_columns`)."""
    if isinstance(packed, bytes):
        try:
            values = orjson.loads(packed)
        except orjson.JSONDecodeError:
            return None
        return values if isinstance(values, list) and len(values) == 6 else None
    if not isinstance(packed, str):
        return None
    parts: list[Any] = packed.split(UNIT_PACKING)
    if len(parts) != 6:
        return None
    enclave = parts[4]
    if not enclave:
        parts[4] = None
    elif enclave[0] == "\x1e":
        parts[4] = enclave[1:]
    else:  # not what the store's SQL writes
        return None
    return parts


def _columns_equal(events: list[Any], columns: list[tuple[Any, ...]]) -> bool:
    """Whether the stored columns of a batch (``verify_rows``' trailing fields, as
    ``zip`` transposed them) equal the events' values: a packed JSON array per row
    compared byte for byte as this store wrote it, or else by value (another store's
    spacing or escaping); a UNIT_PACKING str by value; six value columns as they are."""
    values = map(_COLUMN_VALUES, events)
    if len(columns) != 1:
        return tuple(values) == tuple(zip(*columns, strict=True))
    packed = columns[0]
    if isinstance(packed[0], bytes) and tuple(map(orjson.dumps, values)) == packed:
        return True
    return list(map(unpack_columns, packed)) == list(map(list, map(_COLUMN_VALUES, events)))


def _check_rows(
    st: _State,
    rows: list[tuple[Any, ...]],
    expected_idx: int,
    integrated_size: int,
    time_of: _TimeParser,
    add: Callable[[list[bytes], int], None],
    columns_of: Callable[[int], tuple[Any, ...] | None],
) -> int:
    """Step 3 entry by entry, naming each bad one; returns the next expected index.

    The same checks as the chunk-wide fast path in :func:`_scan_segment`, which sends a
    chunk here as soon as any of them fails. ``columns_of(idx)`` reads an entry's
    columns as they are when their packed form cannot be read back exactly."""
    sha256 = hashlib.sha256
    loads = orjson.loads
    sort = orjson.OPT_SORT_KEYS
    for idx, lh, leaf, t_ns, indexed, *columns in rows:
        if idx != expected_idx:
            st.bad(
                f"entry {expected_idx} is missing (the next stored index is {idx})", expected_idx
            )
            expected_idx = idx
        if not isinstance(leaf, bytes):  # stored as text: a type a writer never uses
            st.bad(f"entry {idx}: leaf is not stored as bytes", idx)
            leaf = (
                leaf.encode("utf-8", "surrogateescape")  # the stored bytes, however decoded
                if isinstance(leaf, str)
                else str(leaf).encode()
            )
        h = sha256(b"\x00" + leaf).digest()
        if h != lh:
            st.bad(f"entry {idx}: stored leaf hash is not SHA-256(0x00||leaf)", idx)
        try:
            d = loads(leaf)
            if orjson.dumps(d, option=sort) != leaf:
                st.bad(f"entry {idx}: leaf is not canonical JSON", idx)
            # the stored text columns arrive packed in one value (see Store.verify_rows),
            # compared by value: exact, whatever escaping was used
            stored = unpack_columns(columns[0]) if len(columns) == 1 else list(columns)
            if stored is None:
                raw = columns_of(idx)
                stored = None if raw is None else list(raw)
            if time_of(d["time"]) != t_ns or stored != [d[f] for f in _COLUMN_FIELDS]:
                st.bad(f"entry {idx}: a stored column differs from the leaf's value", idx)
            # the index row equals the entry's columns (compared by the database) and
            # those equal the leaf's values (just above): so the index equals the leaf
            if not indexed and idx < integrated_size:
                st.bad(f"entry {idx}: its query-index row is missing or differs from the leaf", idx)
        except (orjson.JSONDecodeError, KeyError, TypeError, AuditError):
            st.bad(f"entry {idx}: leaf is not a well-formed event", idx)
        add([h], idx)
        expected_idx = idx + 1
    return expected_idx


def _start_method() -> str:
    """``fork`` in a single-threaded process (the CLI, a benchmark): workers start at
    once, sharing the imported code. ``spawn`` otherwise (the audit service verifies
    from a thread): forking a process with other threads can copy a lock another
    thread holds and deadlock the child. A forked worker never touches the parent's
    store connections; it opens its own (``_segment_in_worker``)."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "spawn"


_worker_store: dict[str, Store] = {}


def _segment_in_worker(
    url: str, share: str | None, job: tuple[int, int, int, int], sizes: tuple[int, ...]
) -> _Segment:
    from .log import open_store

    store = _worker_store.get(url)
    if store is None:
        store = _worker_store[url] = open_store(url, create=False)
    s0, s1, integrated_size, chunk = job
    with store.snapshot(share=share):
        return _scan_segment(store, s0, s1, integrated_size, chunk, sizes)


def _run_segments(
    store: Store,
    url: str | None,
    share: str | None,
    jobs: list[tuple[int, int, int, int]],
    sizes_in: Callable[[int, int], tuple[int, ...]],
    n_workers: int,
) -> Iterator[tuple[tuple[int, int, int, int], _Segment]]:
    """Scan segments in order; with workers, a bounded window of them runs ahead."""
    if n_workers <= 1 or url is None:
        for job in jobs:
            yield (
                job,
                _scan_segment(store, job[0], job[1], job[2], job[3], sizes_in(job[0], job[1])),
            )
        return
    ctx = multiprocessing.get_context(_start_method())
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
        window: deque[tuple[tuple[int, int, int, int], Future[_Segment]]] = deque()
        it = iter(jobs)
        head = next(it)
        head_sizes = sizes_in(head[0], head[1])
        for job in it:
            window.append(
                (job, pool.submit(_segment_in_worker, url, share, job, sizes_in(job[0], job[1])))
            )
            if len(window) >= 2 * n_workers:
                break
        # A spawned worker needs about half a second to import before it scans: this
        # process scans the first segment meanwhile, instead of waiting (and with
        # fork, while the pool starts).
        yield head, _scan_segment(store, head[0], head[1], head[2], head[3], head_sizes)
        while window:
            job, fut = window.popleft()
            nxt = next(it, None)
            if nxt is not None:
                window.append(
                    (
                        nxt,
                        pool.submit(_segment_in_worker, url, share, nxt, sizes_in(nxt[0], nxt[1])),
                    )
                )
            yield job, fut.result()
