"""The scan of verify (steps 3 and 4 of :mod:`audit._verify` for one segment of entries):
reading rows and tiles from the store and checking them, with no knowledge of workers.

Two paths apply the same definitions: the compiled one (``audit._speedups``, built at
install when a C compiler is there) and the pure-Python reference,
:func:`check_batch_python`, which a batch goes through when the compiled module is
absent or does not pass it. Only a batch that fails some check is walked entry by entry
(:func:`_check_rows`) to name exactly which entries are bad.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from ._events import time_ns as event_time_ns
from ._store import UNIT_PACKING, Store
from .errors import AuditError

try:
    from . import _speedups
except ImportError:  # not built (no C compiler at install): the same checks in Python
    _speedups = None  # type: ignore[assignment]

__all__ = [
    "SEGMENT",
    "TILE",
    "Level",
    "Problems",
    "Segment",
    "TileCache",
    "check_batch_python",
    "check_tile",
    "checkpoint_rows",
    "compiled",
    "head_rows",
    "scan_segment",
    "unpack_columns",
]

TILE = 256
_MAX_PROBLEMS = 20
SEGMENT = TILE * TILE
"""Entries per unit of work: one level-1 tile (aligned, so segments are independent)."""

_BATCH = 128
"""Rows checked together by the fast path (measured best among 64..20,000)."""
_COLUMN_FIELDS = ("id", "source", "actor", "action", "enclave", "outcome")
"""The event fields stored as the columns of Store.VERIFY_COLUMNS, in that order."""


def compiled() -> bool:
    """Whether the compiled fast path (``audit._speedups``) is there to be used."""
    return _speedups is not None


@dataclass
class Problems:
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


class Level:
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


_Row = TypeVar("_Row", bound=tuple[Any, ...])


def _paged(fetch: Callable[[int], Sequence[_Row]]) -> Iterator[_Row]:
    """Every row ``fetch(after)`` returns, a page at a time, keyed by the first column."""
    after = -1
    while rows := fetch(after):
        yield from rows
        after = rows[-1][0]


def head_rows(store: Store) -> Iterator[tuple[int, bytes]]:
    """Stored tree heads (size, root) in order of size."""
    return _paged(lambda after: store.heads(after=after, limit=10_000))


def checkpoint_rows(store: Store) -> Iterator[tuple[int, int, bytes, str, str]]:
    """Stored checkpoints (seq, size, root, note, created) in order of seq."""
    return _paged(lambda after: store.checkpoints(after_seq=after, limit=1000))


@dataclass
class Segment:
    """What one segment's scan found: problems, and compact ranges at requested sizes."""

    problems: list[tuple[str, int | None]]  # exact: the entry at the index is bad
    ranges: list[tuple[str, int, int]]  # some entry in [lo, end) or a stored hash is bad
    stacks: list[tuple[int, list[bytes]]]  # (size, compact range of [start, size))
    stacks_final: list[bytes]  # compact range of the whole segment
    expected_end: int


class TileCache:
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


def check_tile(
    st: Problems, tiles: TileCache, level: int, tile_idx: int, nodes: list[bytes]
) -> None:
    got = tiles.get(level, tile_idx)
    if got is None:
        st.bad(f"tile at level {level}, index {tile_idx} is missing from the store", None)
    elif got != b"".join(nodes):
        span = TILE**level
        for j in range(TILE):
            if got[j * 32 : (j + 1) * 32] != nodes[j]:
                first = (tile_idx * TILE + j) * span
                msg = (
                    f"stored tile hash (level {level}, node {tile_idx * TILE + j}) differs "
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


class _SegmentTree:
    """The tree part of step 4 over one segment's leaf hashes.

    Leaf hashes of a level-0 tile are collected and hashed level by level when the tile
    is full (its 255 interior hashes, as the tile's own root needs anyway); level-1 tile
    roots go into an incremental compact range. The compact range at a requested size
    is taken from the levels of the tile it falls in."""

    def __init__(
        self, store: Store, st: Problems, *, integrated_size: int, sizes: tuple[int, ...]
    ) -> None:
        self.st = st
        self.tiles = TileCache(store)
        self.level1 = Level()
        self.integrated_size = integrated_size
        self.tile_levels = _speedups.tile_levels if _speedups is not None else _tile_levels
        self.wanted = sorted(set(sizes))
        self.stacks: list[tuple[int, list[bytes]]] = []
        self.marks: list[tuple[int, int, list[bytes]]] = []  # (size, in tile, level-1 stack)
        self.hashes: list[bytes] = []

    def flush(self, last_idx: int) -> None:
        """Close the current level-0 tile (full, or the partial one at the segment end)."""
        hashes = self.hashes
        levels = self.tile_levels(hashes)
        for size, k, l1 in self.marks:
            self.stacks.append((size, l1 + _compact(levels, k)))
        self.marks.clear()
        if len(hashes) == TILE:
            t0 = last_idx // TILE
            if last_idx < self.integrated_size:  # tiles are written at integration
                check_tile(self.st, self.tiles, 0, t0, hashes)
            self.level1.add(levels[8][0])
            if len(self.level1.nodes) == TILE and last_idx < self.integrated_size:
                check_tile(self.st, self.tiles, 1, t0 // TILE, self.level1.nodes)
            self.hashes = []

    def add(self, hs: list[bytes], first: int) -> None:
        """Add the leaf hashes of entries ``first, first+1, ...``, tile by tile."""
        wanted = self.wanted
        i = 0
        while i < len(hs):
            part = hs[i : i + TILE - len(self.hashes)]
            lo = first + i
            hi = lo + len(part)
            # the compact range at a requested size is taken when its tile closes
            for size in wanted[bisect.bisect_right(wanted, lo) : bisect.bisect_right(wanted, hi)]:
                self.marks.append((size, len(self.hashes) + size - lo, list(self.level1.stack)))
            self.hashes.extend(part)
            i += len(part)
            if len(self.hashes) == TILE:
                self.flush(hi - 1)

    def final(self, expected_end: int) -> list[bytes]:
        """Close the last tile; the compact range of the whole segment."""
        partial = list(self.hashes)
        self.flush(expected_end - 1)
        if len(self.level1.nodes) == TILE:
            return [self.level1.root()]
        return list(self.level1.stack) + _compact(self.tile_levels(partial), len(partial))


_CANONICAL = functools.partial(orjson.dumps, option=orjson.OPT_SORT_KEYS)
_TIME_FIELD = operator.itemgetter("time")


def check_batch_python(
    batch: list[tuple[Any, ...]], first: int, integrated_size: int, time_of: _TimeParser
) -> list[bytes] | None:
    """The pure-Python reference of ``_speedups.check_batch``: the batch's leaf hashes
    if every row passes step 3, else None (the caller then names the bad rows).

    One operation per check over the whole batch (``map`` and list comparisons run in
    C, not one interpreted step per entry)."""
    idxs, stored_hashes, leaves, times_ns, indexed, *columns = zip(*batch, strict=True)
    sha256 = hashlib.sha256
    try:
        hs = [sha256(b"\x00" + leaf).digest() for leaf in leaves]
        events = list(map(orjson.loads, leaves))
        ok = (
            idxs[0] == first  # indexes are unique and ordered: so first, last
            and idxs[-1] == first + len(idxs) - 1  # and count say contiguous
            and tuple(hs) == stored_hashes
            # one canonical array for the batch: its elements are the leaves iff it
            # equals their join (each leaf parsed as one value above)
            and _CANONICAL(events) == b"[" + b",".join(leaves) + b"]"
            and tuple(time_of.many(list(map(_TIME_FIELD, events)))) == times_ns
            and _columns_equal(events, columns)
            and all(indexed[: max(0, integrated_size - first)])
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, AuditError):
        return None
    return hs if ok else None


def scan_segment(
    store: Store, start: int, end: int, integrated_size: int, chunk: int, sizes: tuple[int, ...]
) -> Segment:
    """Step 3 and the tile part of step 4 for entries ``[start, end)``.

    Rows are checked in batches of :data:`_BATCH`: contiguous indexes, leaf hashes,
    canonical JSON, columns, index rows. First by the compiled module
    (``_speedups.check_batch``), which passes a batch only if the checks below would;
    else by :func:`check_batch_python`. Only a batch that fails some check is walked
    entry by entry (:func:`_check_rows`) to name exactly which entries are bad; all
    three paths apply the same definitions. Small batches (and chunks) keep the
    working set in the CPU caches: with 20,000 rows at a time the same work measured
    twice as slow."""
    st = Problems()
    tree = _SegmentTree(store, st, integrated_size=integrated_size, sizes=sizes)
    check_batch = _speedups.check_batch if _speedups is not None else None
    time_of = _TimeParser()
    expected_idx = start
    for pos in range(start, end, chunk):
        stop = min(end, pos + chunk)
        rows = store.verify_rows(pos, stop)
        if not rows:
            st.bad(f"entries {pos}..{stop - 1} are missing", pos)
            continue
        for b in range(0, len(rows), _BATCH):
            batch = rows[b : b + _BATCH]
            first = expected_idx
            hs = None
            if check_batch is not None:  # compiled: the same checks (see _speedups)
                hs = check_batch(batch, first, integrated_size)
            if hs is None:
                hs = check_batch_python(batch, first, integrated_size, time_of)
            if hs is not None:
                tree.add(hs, first)
                expected_idx = first + len(batch)
            else:
                expected_idx = _check_rows(
                    st, batch, first, integrated_size, time_of, tree.add, store.entry_columns
                )
    if expected_idx < end:
        st.bad(f"entries from {expected_idx} are missing", expected_idx)
    final = tree.final(expected_idx)
    return Segment(
        problems=[p for p in st.problems if p[0] not in {r[0] for r in st.ranges}],
        ranges=st.ranges,
        stacks=tree.stacks,
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
    st: Problems,
    rows: list[tuple[Any, ...]],
    expected_idx: int,
    integrated_size: int,
    time_of: _TimeParser,
    add: Callable[[list[bytes], int], None],
    columns_of: Callable[[int], tuple[Any, ...] | None],
) -> int:
    """Step 3 entry by entry, naming each bad one; returns the next expected index.

    The same checks as the chunk-wide fast path in :func:`scan_segment`, which sends a
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
