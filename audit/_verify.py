"""Offline verification of a whole log (an fsck): one streaming pass, constant memory.

Procedure (what ``enclave audit verify`` does):

1. Open every stored checkpoint with the trusted verifier keys (``--key``, else the
   keys recorded in the store): each signature must verify, its text must parse as a
   tlog-checkpoint, and its size and root must equal the row's stored columns; sizes
   never decrease from one checkpoint to the next.
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

import hashlib
import hmac
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import orjson

from ._events import time_ns as event_time_ns
from ._merkle import EMPTY_ROOT
from ._note import Checkpoint, Verifier, parse_checkpoint
from ._store import Store
from .errors import AuditError, NoteError

__all__ = ["VerifyReport", "verify_store"]

_TILE = 256
_MAX_PROBLEMS = 20


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

    @property
    def summary(self) -> str:
        """One line for humans."""
        if self.ok:
            extra = f", extends checkpoint at size {self.against.size}" if self.against else ""
            return f"OK: {self.entries} entries, {self.checkpoints} checkpoints verified{extra}"
        where = f" at index {self.first_bad_index}" if self.first_bad_index is not None else ""
        return f"FAILED{where}: {self.problems[0]}"


@dataclass
class _State:
    problems: list[tuple[str, int | None]] = field(default_factory=list)
    first_exact: int | None = None  # an entry shown bad by its own hashes or columns
    first_range: int | None = None  # the start of a range a root mismatch points at
    last_good_size: int = 0
    last_good_signed: int = 0

    def bad_range(self, msg: str, lo: int, size: int) -> None:
        """A root mismatch: some entry in ``lo..size-1`` is bad, unless one is known already."""
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
    chunk: int = 20_000,
) -> VerifyReport:
    """Verify everything stored in ``store``; see the module docstring for the steps."""
    st = _State()
    if verifiers is None:
        try:
            verifiers = [Verifier.parse(k) for k in store.verifier_keys()]
        except NoteError as e:
            st.bad(f"a verifier key recorded in the store is malformed: {e}", None)
            verifiers = []
    total = store.size()
    # expected roots: size -> list of (root, label); filled lazily from two ordered streams
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
        if cp.size > total:
            st.bad(
                f"{label} covers {cp.size} entries but the log has {total}: entries were removed",
                total,
            )
        cp_expect.append((cp.size, cp.root_hash, label))
        if len(cp_expect) > 100_000:
            st.bad("more than 100000 checkpoints: verify the newest with --against instead", None)
            break
    cp_expect.sort(key=lambda t: t[0])

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

    # steps 3 and 4
    # levels[L]: the nodes of tree level 8L in the current (incomplete) tile at level L,
    # plus their compact range; the tree's compact range is the concatenation of all
    # levels' ranges, top level first, so a root costs O(log n) at any size.
    levels: list[_Level] = [_Level()]
    expected_idx = 0
    sha256 = hashlib.sha256
    loads = orjson.loads
    dumps = orjson.dumps
    sort = orjson.OPT_SORT_KEYS
    stored_tiles: dict[int, dict[int, bytes]] = {}
    second_ns: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> ns, bounded cache

    def stored_tile(level: int, idx: int) -> bytes | None:
        cache = stored_tiles.setdefault(level, {})
        if idx not in cache:
            cache.clear()
            span = 64 if level == 0 else 1
            for t in store.tiles(level, idx, idx + span):
                cache[t.idx] = t.hashes
            for i in range(idx, idx + span):
                cache.setdefault(i, b"")
        return cache[idx] or None

    def tile_done(level: int, tile_idx: int) -> None:
        lv = levels[level]
        got = stored_tile(level, tile_idx)
        if got is None:
            st.bad(f"tile at level {level}, index {tile_idx} is missing from the store", None)
        elif got != b"".join(lv.nodes):
            span = _TILE**level
            for j in range(_TILE):
                if got[j * 32 : (j + 1) * 32] != lv.nodes[j]:
                    first = (tile_idx * _TILE + j) * span
                    st.bad(
                        f"stored tile hash (level {level}, node {tile_idx * _TILE + j}) differs "
                        f"from the hash recomputed from entries {first}..{first + span - 1}",
                        first,
                    )
                    break
        root = lv.root()
        lv.reset()
        if len(levels) == level + 1:
            levels.append(_Level())
        levels[level + 1].add(root)
        if len(levels[level + 1].nodes) == _TILE:
            tile_done(level + 1, tile_idx // _TILE)

    class _Tree:
        """The root at the current size, from the levels' compact ranges."""

        def root(self) -> bytes:
            stack = [h for lv in reversed(levels) for h in lv.stack]
            if not stack:
                return EMPTY_ROOT
            r = stack[-1]
            for h in reversed(stack[:-1]):
                r = sha256(b"\x01" + h + r).digest()
            return r

    tree = _Tree()

    def time_of(t: str) -> int:
        if len(t) == 20 or (len(t) > 20 and t[19] == "."):
            base = second_ns.get(t[:19])
            if base is None:
                if len(second_ns) > 100_000:
                    second_ns.clear()
                base = second_ns[t[:19]] = event_time_ns(t[:19] + "Z")
            if len(t) == 20:
                return base
            frac = t[20:-1]
            if t[-1] == "Z" and frac.isdigit() and len(frac) <= 9:
                return base + int(frac.ljust(9, "0"))
        return event_time_ns(t)

    def check_root(size: int) -> None:
        nonlocal next_head, cp_pos
        root = None
        while next_head is not None and next_head[0] < size:
            next_head = next(head_it, None)
        while cp_pos < len(cp_expect) and cp_expect[cp_pos][0] < size:
            cp_pos += 1
        while next_head is not None and next_head[0] == size:
            root = root or tree.root()
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
            root = root or tree.root()
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

    checkpoints_at = {c[0] for c in cp_expect}
    head_size = next_head[0] if next_head else -1
    integrated = store.latest_head()
    integrated_size = integrated[0] if integrated else 0
    pos = 0
    level0 = levels[0]
    while pos < total:
        end = min(total, pos + chunk)
        rows = store.entries(pos, end)
        index = {int(r[0]): tuple(r[1:]) for r in store.index_rows(pos, min(end, integrated_size))}
        for idx, lh, eid, t_ns, source, actor, action, enclave, outcome, leaf in rows:
            if idx != expected_idx:
                st.bad(
                    f"entry {expected_idx} is missing (the next stored index is {idx})",
                    expected_idx,
                )
                # keep going so later checks still run, but the tree is now wrong
                expected_idx = idx
            leaf = bytes(leaf)
            h = sha256(b"\x00" + leaf).digest()
            if h != bytes(lh):
                st.bad(f"entry {idx}: stored leaf hash is not SHA-256(0x00||leaf)", idx)
            try:
                d = loads(leaf)
                if dumps(d, option=sort) != leaf:
                    st.bad(f"entry {idx}: leaf is not canonical JSON", idx)
                cols = (
                    time_of(d["time"]),
                    d["source"],
                    d["actor"],
                    d["action"],
                    d["enclave"],
                    d["outcome"],
                )
                if d["id"] != eid or cols != (t_ns, source, actor, action, enclave, outcome):
                    st.bad(f"entry {idx}: a stored column differs from the leaf's value", idx)
                if idx < integrated_size and index.get(idx) != cols:
                    st.bad(
                        f"entry {idx}: its query-index row is missing or differs from the leaf", idx
                    )
            except (orjson.JSONDecodeError, KeyError, TypeError, AuditError):
                st.bad(f"entry {idx}: leaf is not a well-formed event", idx)
            level0.add(h)
            if len(level0.nodes) == _TILE:
                tile_done(0, idx // _TILE)
            size = idx + 1
            if size == head_size or size in checkpoints_at:
                check_root(size)
                head_size = next_head[0] if next_head else -1
            expected_idx = idx + 1
        if not rows:
            st.bad(f"entries {pos}..{end - 1} are missing", pos)
        pos += chunk
        if progress is not None:
            progress(min(pos, total), total)

    # step 5
    if expected_idx < total:
        st.bad(f"entries from {expected_idx} are missing", expected_idx)
    for level, count in store.tile_levels().items():
        if count * _TILE ** (level + 1) > total:
            st.bad(
                f"stored tiles at level {level} cover more entries than the log has: the tail "
                "was removed",
                total,
            )
    rows_n, index_end = store.index_count()
    if rows_n != index_end or index_end > integrated_size:
        st.bad(
            f"the query index has {rows_n} rows up to index {index_end} for an integrated size "
            f"of {integrated_size}",
            min(index_end, integrated_size) if index_end > integrated_size else None,
        )
    while next_head is not None:
        if next_head[0] > total:
            st.bad(
                f"tree head at size {next_head[0]} but the log has only {total} entries: the "
                "tail was removed",
                total,
            )
            break
        next_head = next(head_it, None)
    root = tree.root()
    return VerifyReport(
        ok=not st.problems,
        entries=total,
        first_bad_index=st.first_bad,
        problems=st.ordered(),
        checkpoints=n_cp,
        root_hash=root,
        against=against_cp,
    )
