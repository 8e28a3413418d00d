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

This module holds the procedure and its report; the scan of entries and tiles (steps
3 and 4, with its compiled and pure-Python paths) is in :mod:`audit._verify_scan`, the
worker processes in :mod:`audit._verify_pool`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from . import _verify_scan as scan
from ._merkle import EMPTY_ROOT
from ._note import Checkpoint, Verifier, parse_checkpoint
from ._store import Store
from ._verify_pool import DEFAULT_WORKERS, run_segments
from ._verify_scan import SEGMENT, TILE, Level, Problems, TileCache, check_tile, unpack_columns
from .errors import NoteError

__all__ = ["DEFAULT_WORKERS", "SEGMENT", "VerifyReport", "unpack_columns", "verify_store"]

_log = structlog.get_logger("audit.verify")

STORE_KEYS_ONLY = (
    "; but only against verifier keys recorded in the store itself, which whoever can "
    "write the store can replace: check with the log's verifier key kept elsewhere "
    "(enclave audit verify --key)"
)
"""What an OK summary adds when no trusted key was given (``keys_from_store``)."""

CheckpointExpectation = tuple[int, bytes, str]
"""(size, root, label) of a checkpoint the recomputed tree must match."""


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
    must be import-safe; see :mod:`audit._verify_pool`), which open
    the store themselves and read the same snapshot (PostgreSQL) or a later one bounded
    to the same sizes (SQLite, whose committed rows cannot change: append-only);
    results are combined here in order. Memory stays bounded.
    """
    if chunk is None:
        chunk = store.verify_chunk
    if not scan.compiled():
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
    """The numbered steps of the module docstring, inside one snapshot."""
    st = Problems()
    keys_from_store = verifiers is None
    if verifiers is None:
        verifiers = _store_keys(store, st)
    cp_expect, n_cp = _step1_checkpoints(store, st, verifiers)
    integrated = store.latest_head()
    integrated_size = integrated[0] if integrated else 0
    total = store.size()
    for size, _, label in cp_expect:
        if size > total:
            st.bad(
                f"{label} covers {size} entries but the log has {total}: entries were removed",
                total,
            )
    against_cp = _step2_against(st, against, verifiers, total, cp_expect)
    cp_expect = _empty_tree_roots(st, cp_expect)
    tree = _Roots(store, st, cp_expect=cp_expect, integrated_size=integrated_size)
    last_stack = _steps3_and_4(
        store,
        st,
        tree,
        share=share,
        total=total,
        integrated_size=integrated_size,
        chunk=chunk,
        workers=workers,
        progress=progress,
    )
    _step5_tail(store, st, tree, total=total, integrated_size=integrated_size)
    return VerifyReport(
        ok=not st.problems,
        entries=total,
        first_bad_index=st.first_bad,
        problems=st.ordered(),
        checkpoints=n_cp,
        root_hash=tree.root_at(last_stack),
        against=against_cp,
        pending=max(0, total - integrated_size),
        keys_from_store=keys_from_store,
    )


def _store_keys(store: Store, st: Problems) -> list[Verifier]:
    """The verifier keys the store itself records (which prove little; see step 1)."""
    try:
        return [Verifier.parse(k) for k in store.verifier_keys()]
    except NoteError as e:
        st.bad(f"a verifier key recorded in the store is malformed: {e}", None)
        return []


def _step1_checkpoints(
    store: Store, st: Problems, verifiers: Sequence[Verifier]
) -> tuple[list[CheckpointExpectation], int]:
    """Step 1: every stored checkpoint's signature, text and columns now (their roots
    are checked during the stream); the roots to expect by size, and how many were read."""
    cp_expect: list[CheckpointExpectation] = []
    n_cp = 0
    prev_size = -1
    for seq, size, root, note, _created in scan.checkpoint_rows(store):
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
    return cp_expect, n_cp


def _step2_against(
    st: Problems,
    against: str | bytes | None,
    verifiers: Sequence[Verifier],
    total: int,
    cp_expect: list[CheckpointExpectation],
) -> Checkpoint | None:
    """Step 2: the ``--against`` checkpoint, opened like the stored ones; its root is
    added to ``cp_expect``."""
    if against is None:
        return None
    try:
        against_cp = parse_checkpoint(against, verifiers)
    except NoteError as e:
        st.bad(f"the --against checkpoint does not verify with the trusted key: {e}", None)
        return None
    if against_cp.size > total:
        st.bad(
            f"the log has {total} entries but the earlier checkpoint covers "
            f"{against_cp.size}: "
            "the tail was truncated",
            total,
        )
    cp_expect.append(
        (against_cp.size, against_cp.root_hash, f"--against checkpoint (size {against_cp.size})")
    )
    cp_expect.sort(key=lambda t: t[0])
    return against_cp


def _empty_tree_roots(
    st: Problems, cp_expect: list[CheckpointExpectation]
) -> list[CheckpointExpectation]:
    """Checkpoints of the empty tree checked against its fixed root; the others returned."""
    for _, root, label in [c for c in cp_expect if c[0] == 0]:
        if not hmac.compare_digest(root, EMPTY_ROOT):
            st.bad(f"{label}: root of the empty tree is wrong", None)
    return [c for c in cp_expect if c[0] != 0]


class _Roots:
    """Step 4 above the segments: tile levels >= 2, the roots at every tree head and
    checkpoint size, compared as the segments' compact ranges arrive in order."""

    def __init__(
        self,
        store: Store,
        st: Problems,
        *,
        cp_expect: list[CheckpointExpectation],
        integrated_size: int,
    ) -> None:
        self.st = st
        self.cp_expect = cp_expect
        self.cp_pos = 0
        self.integrated_size = integrated_size
        self.upper: list[Level] = [Level(), Level(), Level()]  # tile levels >= 2 live here
        self.stored = TileCache(store)
        self.head_it = scan.head_rows(store)
        self.next_head = next(self.head_it, None)
        while self.next_head is not None and self.next_head[0] == 0:
            self.next_head = next(self.head_it, None)
        # Which sizes need a root: every tree head and checkpoint, read a window at a time.
        self.head_sizes = scan.head_rows(store)
        self.pending_head = next(self.head_sizes, None)

    def upper_push(self, level: int, h: bytes, node_idx: int) -> None:
        """Add node ``node_idx`` of tree height 8*level; check the tile it completes."""
        while len(self.upper) <= level:
            self.upper.append(Level())
        lv = self.upper[level]
        lv.add(h)
        if len(lv.nodes) == TILE:
            tile_idx = node_idx // TILE
            if (tile_idx + 1) * TILE ** (level + 1) <= self.integrated_size:
                check_tile(self.st, self.stored, level, tile_idx, lv.nodes)
            root = lv.root()
            lv.reset()
            self.upper_push(level + 1, root, tile_idx)

    def root_at(self, seg_stack: Sequence[bytes]) -> bytes:
        stack = [h for lv in reversed(self.upper[2:]) for h in lv.stack] + list(seg_stack)
        if not stack:
            return EMPTY_ROOT
        r = stack[-1]
        for h in reversed(stack[:-1]):
            r = hashlib.sha256(b"\x01" + h + r).digest()
        return r

    def sizes_in(self, start: int, end: int) -> tuple[int, ...]:
        out: list[int] = []
        while self.pending_head is not None and self.pending_head[0] <= end:
            if self.pending_head[0] > start:
                out.append(self.pending_head[0])
            self.pending_head = next(self.head_sizes, None)
        out += [c[0] for c in self.cp_expect if start < c[0] <= end]
        return tuple(sorted(set(out)))

    def check_root(self, size: int, root: bytes) -> None:
        """The root recomputed at ``size`` against every tree head and checkpoint there."""
        st = self.st
        while self.next_head is not None and self.next_head[0] < size:
            self.next_head = next(self.head_it, None)
        while self.cp_pos < len(self.cp_expect) and self.cp_expect[self.cp_pos][0] < size:
            self.cp_pos += 1
        while self.next_head is not None and self.next_head[0] == size:
            if not hmac.compare_digest(root, self.next_head[1]):
                st.bad_range(
                    f"tree head at size {size} does not match the entries: the head, or some "
                    f"entry in {st.last_good_size}..{size - 1}, was altered",
                    st.last_good_size,
                    size,
                )
            else:
                st.last_good_size = size
            self.next_head = next(self.head_it, None)
        while self.cp_pos < len(self.cp_expect) and self.cp_expect[self.cp_pos][0] == size:
            _, want, label = self.cp_expect[self.cp_pos]
            self._check_checkpoint(size, root, want, label)
            self.cp_pos += 1

    def _check_checkpoint(self, size: int, root: bytes, want: bytes, label: str) -> None:
        st = self.st
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


def _steps3_and_4(
    store: Store,
    st: Problems,
    tree: _Roots,
    *,
    share: str | None,
    total: int,
    integrated_size: int,
    chunk: int,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[bytes]:
    """Steps 3 and 4, segment by segment (in worker processes for big logs); returns
    the compact range of the last, partial segment."""
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
    last_stack: list[bytes] = []
    for (s0, s1, *_), result in run_segments(store, url, share, jobs, tree.sizes_in, n_workers):
        for msg, idx in result.problems:
            st.bad(msg, idx)
        for msg, lo, end in result.ranges:
            st.bad_range(msg, lo, end)
        for size, seg_stack in result.stacks:
            tree.check_root(size, tree.root_at(seg_stack))
        if s1 - s0 == SEGMENT:
            tree.upper_push(2, result.stacks_final[0], s0 // SEGMENT)
        else:
            last_stack = result.stacks_final
        if progress is not None:
            progress(s1, total)
    return last_stack


def _step5_tail(
    store: Store, st: Problems, tree: _Roots, *, total: int, integrated_size: int
) -> None:
    """Step 5 (in the same snapshot: nothing a writer did since can show here)."""
    rows_n, index_end = store.index_count()
    if rows_n != index_end or index_end > integrated_size:
        st.bad(
            f"the query index has {rows_n} rows up to index {index_end} for an integrated size "
            f"of {integrated_size}",
            min(index_end, integrated_size) if index_end > integrated_size else None,
        )
    for level, count in sorted(store.tile_levels().items()):
        covered = count * TILE ** (level + 1)
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
    while tree.next_head is not None:
        if tree.next_head[0] > total:
            st.bad(
                f"tree head at size {tree.next_head[0]} but the log has only {total} entries: "
                "the tail was removed",
                total,
            )
            break
        tree.next_head = next(tree.head_it, None)
