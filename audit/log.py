"""The audit log: sequencing, integration and publication as three separate steps.

1. **Sequencing** (:meth:`AuditLog.append`): events become leaves (canonical JSON with
   the log's receipt time), get contiguous indexes and are committed durably in one
   transaction. Concurrent callers are grouped into one transaction (group commit).
   An index is returned only after that commit is durable.
2. **Integration** (:meth:`AuditLog.integrate`): sequenced leaves are added to the
   RFC 9162 Merkle tree; full 256-hash tiles and the new tree head are stored.
3. **Publication** (:meth:`AuditLog.checkpoint`): the latest tree head is signed as a
   C2SP checkpoint, only after proving it consistent with the last one signed.

Like tessera (``append_lifecycle.go``): each step can lag the one before it, and
nothing a later step does can change what an earlier one made durable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import structlog

from . import _metrics as m
from ._events import Event, StoredEvent, encode_leaf, parse_leaf, utc_now
from ._merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    subtree_root,
    verify_consistency,
)
from ._note import (
    Checkpoint,
    Signer,
    Verifier,
    format_checkpoint_body,
    load_signer,
    parse_checkpoint,
    sign_note,
)
from ._store import EntryRow, EventKey, Query, Store, TileRow, decode_cursor, encode_cursor
from ._tile_tree import TILE_WIDTH, TileNodes, frontier, push_node
from .errors import (
    ConfigError,
    DuplicateIdError,
    EventError,
    InconsistentCheckpointError,
    NoteError,
    ProofError,
    StoreError,
    TemporaryError,
)

__all__ = ["AuditLog", "TreeHead", "open_log", "open_store"]

_log = structlog.get_logger("audit.log")

_INTEGRATE_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class TreeHead:
    """An integrated tree size and its root hash."""

    size: int
    root_hash: bytes


def open_store(url: str, *, create: bool = True) -> Store:
    """The store behind ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    if url.startswith("sqlite:"):
        from ._store_sqlite import SqliteStore

        return SqliteStore(url, create=create)
    if url.startswith(("postgresql://", "postgres://")):
        from ._store_postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(
        f"unknown store URL scheme in {url.split(':', 1)[0]!r}: use sqlite:///path or postgresql://"
    )


def open_log(
    url: str,
    *,
    signer_key_path: Path | str | None = None,
    create: bool = True,
    clock: Callable[[], str] = utc_now,
) -> AuditLog:
    """Open the audit log at ``url``.

    A new, empty SQLite file is initialised with the migrations when ``create`` is
    true; any other store must already be at the current schema version (run
    ``enclave audit migrate``). ``signer_key_path`` is the signing key file needed by
    :meth:`AuditLog.checkpoint`; no key is ever generated here.
    """
    signer = load_signer(Path(signer_key_path)) if signer_key_path is not None else None
    store = open_store(url, create=create)
    try:
        from ._store import migrations

        latest = migrations(store.dialect)[-1][0]
        have = store.schema_version()
        if have == 0 and create and store.dialect == "sqlite":
            store.migrate()
        elif have < latest:
            raise StoreError(
                f"audit store {store.url_redacted} is at schema version {have}, this code needs "
                f"{latest}: run `enclave audit migrate --store URL` as the store's owner"
            )
        elif have > latest:
            raise StoreError(
                f"audit store schema version {have} is newer than this code ({latest})"
            )
        return AuditLog(store, signer=signer, clock=clock)
    except BaseException:
        store.close()
        raise


@dataclass(slots=True)
class _Request:
    rows: list[EntryRow]
    ids: list[EventKey]  # (event_id, source, enclave): ids are unique per source and enclave
    result: list[int] | None = None
    error: BaseException | None = None
    done: bool = False


class AuditLog:
    """An append-only, tamper-evident log over a :class:`~audit._store.Store`. Thread-safe."""

    def __init__(
        self, store: Store, *, signer: Signer | None = None, clock: Callable[[], str] = utc_now
    ):
        self._store = store
        self._signer = signer
        self._clock = clock
        self._cond = threading.Condition()
        self._queue: list[_Request] = []
        self._leader = False
        self._ilock = threading.RLock()
        self._state_size = -1  # integration state not loaded
        self._pending: list[list[bytes]] = []
        self._tree = TreeBuilder()
        self._cp_lock = threading.Lock()
        self._tiles = TileNodes(store)

    # -- lifecycle ------------------------------------------------------------------
    @property
    def store(self) -> Store:
        """The underlying store (for the verifier and the CLI)."""
        return self._store

    @property
    def signer(self) -> Signer | None:
        return self._signer

    def close(self) -> None:
        """Close the store's connections."""
        self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- 1. sequencing ---------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> list[int]:
        """Durably append ``events`` as one atomic batch; return their indexes.

        Event ids are unique per ``source`` and ``enclave``: an event whose ``id`` the
        log already holds for the same source and enclave, with the same content, is
        not appended again: its existing index is returned (so a client may safely retry
        a batch whose acknowledgement it lost). The same ``id``, source and enclave with
        different content is refused with :class:`EventError` (naming no index) and
        nothing of the batch is appended. The same ``id`` from another source or enclave
        is another event.

        A failure inside the shared transaction of a group commit is not the group's:
        the group is retried one request at a time, so only the request that fails gets
        the error (a busy or unreachable store, :class:`TemporaryError`, fails them all).
        """
        t0 = time.perf_counter()
        if not isinstance(events, Sequence) or not all(isinstance(e, Event) for e in events):
            raise EventError("append takes a sequence of Event objects")
        if not events:
            return []
        received = self._clock()
        rows: list[EntryRow] = []
        ids: list[EventKey] = []
        for ev in events:
            leaf = encode_leaf(ev, received=received)
            rows.append(
                EntryRow(
                    leaf_hash(leaf),
                    ev.id,
                    ev.time_ns,
                    ev.source,
                    ev.actor,
                    ev.action,
                    ev.enclave,
                    ev.outcome,
                    leaf,
                )
            )
            ids.append((ev.id, ev.source, ev.enclave))
        req = _Request(rows=rows, ids=ids)
        with self._cond:
            self._queue.append(req)
            while not req.done and self._leader:
                self._cond.wait()
            if not req.done:
                self._leader = True
        if not req.done:
            self._lead()
        if req.error is not None:
            raise req.error
        assert req.result is not None
        m.BATCH_SIZE.observe(len(events))
        m.APPEND_LATENCY.observe(time.perf_counter() - t0)
        return req.result

    def _lead(self) -> None:
        """Write every queued request, one group-commit transaction per round."""
        while True:
            with self._cond:
                batch, self._queue = self._queue, []
                if not batch:
                    self._leader = False
                    self._cond.notify_all()
                    return
            try:
                self._commit_isolated(batch)
            except BaseException as e:  # noqa: BLE001 - e.g. an interrupt: every waiter learns of it
                for r in batch:
                    if not r.done and r.result is None:
                        r.error = e
            with self._cond:
                for r in batch:
                    r.done = True
                self._cond.notify_all()

    def _commit_isolated(self, batch: list[_Request]) -> None:
        """Commit ``batch`` as one group; if that transaction fails (nothing of it was
        written), commit each request alone, so that one request's failure (say, a value
        the store cannot hold) is its own and never its neighbours'."""
        try:
            self._commit_group(batch)
            return
        except Exception as e:  # noqa: BLE001 - retried below, request by request
            # A store that is busy or unreachable fails every request alike: retrying
            # each would only multiply the wait, so the group gets it at once.
            if len(batch) == 1 or isinstance(e, TemporaryError):
                for r in batch:
                    if not r.done:
                        r.error = e
                return
        for r in batch:
            if r.done:  # refused by _plan, with its own error
                continue
            r.error, r.result = None, None
            try:
                self._commit_group([r])
            except Exception as e:  # noqa: BLE001 - this request's failure, reported to it
                r.error = e

    def _commit_group(self, batch: list[_Request]) -> None:
        """One transaction for every request in ``batch``.

        Fast path: insert without looking ids up; the store's unique index on event ids
        refuses a batch that repeats a stored id, and only then are the ids looked up
        to return existing indexes (idempotent retry) or refuse a conflicting reuse.
        """
        writes, rows = self._plan(batch, {})
        try:
            first = self._store.sequence(rows) if rows else 0
        except DuplicateIdError:
            for r in batch:
                r.error, r.done = None, False
            existing = self._store.find_event_ids([i for r in batch for i in r.ids])
            writes, rows = self._plan(batch, existing)
            first = self._store.sequence(rows) if rows else 0
        m.APPENDS.inc(len(rows))
        m.APPEND_BATCHES.inc()
        pos = first
        for r, slots in writes:
            out: list[int] = []
            by_id: dict[EventKey, int] = {}
            for eid, s in zip(r.ids, slots, strict=True):
                if s is None:
                    by_id[eid] = pos
                    out.append(pos)
                    pos += 1
                elif s == -1:
                    out.append(by_id[eid])
                else:
                    out.append(s)
            r.result = out

    def _plan(
        self, batch: list[_Request], existing: dict[EventKey, tuple[int, bytes]]
    ) -> tuple[list[tuple[_Request, list[int | None]]], list[EntryRow]]:
        """Which rows to write; marks requests refused for reusing an id differently."""
        seen: set[EventKey] = set()
        writes: list[tuple[_Request, list[int | None]]] = []
        rows: list[EntryRow] = []
        for r in batch:
            slots: list[int | None] = []
            new_rows: list[EntryRow] = []
            local: dict[EventKey, EntryRow] = {}
            try:
                for eid, row in zip(r.ids, r.rows, strict=True):
                    if eid in existing:
                        idx, leaf = existing[eid]
                        if _event_part(leaf) != _event_part(row.leaf):
                            raise EventError(
                                f"id {eid[0]!r} is already used by a different event of "
                                "this source and enclave",
                                field="id",
                            )
                        slots.append(idx)
                    elif eid in local:
                        if _event_part(local[eid].leaf) != _event_part(row.leaf):
                            raise EventError(
                                f"id {eid[0]!r} appears twice with different content",
                                field="id",
                            )
                        slots.append(-1)  # the index of its first occurrence, after the write
                    elif eid in seen:
                        raise EventError(
                            f"id {eid[0]!r} is being appended concurrently", field="id"
                        )
                    else:
                        local[eid] = row
                        slots.append(None)
                        new_rows.append(row)
            except EventError as e:
                r.error = e
                r.done = True
                continue
            seen.update(local)
            writes.append((r, slots))
            rows.extend(new_rows)
        return writes, rows

    # -- 2. integration -------------------------------------------------------------------
    def _load_state(self) -> None:
        head = self._store.latest_head()
        size = head[0] if head else 0
        self._pending = self._tiles.pending_rows(size)
        tree = TreeBuilder()
        tree._stack = frontier(self._tiles.source(size), size)
        tree.size = size
        self._tree = tree
        self._state_size = size
        if head and tree.root() != head[1]:
            raise StoreError(
                f"stored tree head at size {size} does not match the stored tree; run "
                "`enclave audit verify`"
            )

    def integrate(self) -> int:
        """Add every sequenced entry to the tree; return the integrated tree size."""
        with self._ilock:
            head = self._store.latest_head()
            if self._state_size != (head[0] if head else 0):
                self._load_state()
            target = self._store.size()
            while self._state_size < target:
                start = self._state_size
                end = min(target, start + _INTEGRATE_CHUNK)
                rows = self._store.integration_rows(start, end)
                if len(rows) != end - start or (rows and int(rows[-1][0]) != end - 1):
                    raise StoreError(
                        f"entries between {start} and {end} are missing; run `enclave audit verify`"
                    )
                hashes = [bytes(r[1]) for r in rows]
                index = [(r[0], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
                tiles: list[TileRow] = []
                pending = [list(p) for p in self._pending]
                tree_stack, tree_size = list(self._tree._stack), self._tree.size
                for i, h in enumerate(hashes):
                    self._tree.append(h)
                    push_node(pending, 0, h, (start + i) // TILE_WIDTH, tiles)
                root = self._tree.root()
                try:
                    ok = self._store.commit_integration(
                        tiles, (end, root, self._clock()), expect_size=start, index=index
                    )
                except BaseException:
                    self._tree._stack, self._tree.size = tree_stack, tree_size
                    self._state_size = -1
                    raise
                if not ok:  # someone else integrated: reload and go on from there
                    self._load_state()
                    continue
                self._pending = pending
                self._state_size = end
            m.TREE_SIZE.set(self._state_size)
            return self._state_size

    def size(self) -> int:
        """The integrated tree size (what checkpoints and proofs can cover)."""
        head = self._store.latest_head()
        return head[0] if head else 0

    def sequenced(self) -> int:
        """The number of durably sequenced entries (integrated or not)."""
        return self._store.size()

    def head(self) -> TreeHead:
        """The latest integrated tree head."""
        head = self._store.latest_head()
        return TreeHead(0, EMPTY_ROOT) if head is None else TreeHead(head[0], head[1])

    # -- reading the tree ---------------------------------------------------------------
    def _check_size(self, size: int | None) -> int:
        current = self.size()
        if size is None:
            return current
        if not 0 <= size <= current:
            raise ProofError(f"tree size {size} is not between 0 and the integrated size {current}")
        return size

    def root_hash(self, size: int | None = None) -> bytes:
        """The root hash of the tree at ``size`` (default: the integrated size)."""
        n = self._check_size(size)
        if n == 0:
            return EMPTY_ROOT
        stored = self._store.head(n)
        if stored is not None:
            return stored
        return subtree_root(self._tiles.source(n), 0, n)

    def entry(self, index: int) -> bytes:
        """The exact leaf bytes at ``index``."""
        if not 0 <= index < 2**63:  # no entry can have it, and no store can look it up
            raise ProofError(f"there is no entry {index}")
        leaf = self._store.leaf(index)
        if leaf is None:
            raise ProofError(f"there is no entry {index}")
        return leaf

    def stored_event(self, index: int) -> StoredEvent:
        """The entry at ``index`` as a :class:`StoredEvent`."""
        return parse_leaf(self.entry(index), index=index)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size``."""
        n = self._check_size(size)
        return inclusion_proof(index, n, self._tiles.source(n))

    def consistency_proof(self, old: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old`` to that of ``size``."""
        n = self._check_size(size)
        if not 0 <= old <= n:
            raise ProofError(f"old size {old} is not between 0 and {n}")
        return consistency_proof(old, n, self._tiles.source(n))

    # -- 3. publication ------------------------------------------------------------------------
    def verifier(self) -> Verifier:
        """This log's verifier: the signer's, else the newest key recorded in the store."""
        if self._signer is not None:
            return self._signer.verifier
        keys = self._store.verifier_keys()
        if not keys:
            raise ConfigError("this log has no signing key and no recorded verifier key")
        return Verifier.parse(keys[-1])

    def verifier_key(self) -> str:
        """The C2SP verifier key string ``name+hexid+base64key``."""
        return self.verifier().vkey

    def checkpoint(self) -> Checkpoint:
        """Sign the latest integrated tree head as a C2SP checkpoint and store it.

        1. Read the latest integrated head (size, root).
        2. Read the latest checkpoint this log signed (if any).
        3. Refuse unless the head's size is at least the checkpoint's and a consistency
           proof built from the stored tree verifies from the old root to the new one
           (the log never signs two inconsistent checkpoints).
        4. If the head is exactly the last signed one and our key signed it, return it.
        5. Sign ``origin, size, root`` with the signing key; store the note; return it.
        """
        if self._signer is None:
            raise ConfigError(
                "checkpoints need a signing key file (make one with `enclave audit keygen`)"
            )
        for _ in range(10):  # another process may sign a later tree between steps 2 and 5
            cp = self._checkpoint_once(self._signer)
            if cp is not None:
                return cp
        raise InconsistentCheckpointError(
            "other processes kept signing later checkpoints; refusing to sign an older one"
        )

    def _checkpoint_once(self, signer: Signer) -> Checkpoint | None:
        """Steps 1-5 of :meth:`checkpoint`; None when a later checkpoint was stored meanwhile."""
        with self._cp_lock:
            head = self.head()  # step 1
            last = self._store.latest_checkpoint()  # step 2
            if last is not None:  # step 3
                psize, proot, pnote = last
                if head.size < psize:
                    raise InconsistentCheckpointError(
                        f"the tree (size {head.size}) is smaller than the last checkpoint "
                        f"(size {psize}): "
                        "entries were removed; refusing to sign"
                    )
                try:
                    proof = consistency_proof(psize, head.size, self._tiles.source(head.size))
                    verify_consistency(
                        old_size=psize,
                        size=head.size,
                        proof=proof,
                        old_root=proot,
                        root=head.root_hash,
                    )
                except ProofError as e:
                    raise InconsistentCheckpointError(
                        f"the tree at size {head.size} is not consistent with the checkpoint "
                        f"at size {psize}: {e}"
                    ) from e
                if psize == head.size:  # step 4
                    try:
                        return parse_checkpoint(pnote, [signer.verifier])
                    except NoteError:
                        pass  # signed by another key (rotation): sign again with ours
            body = format_checkpoint_body(signer.name, head.size, head.root_hash)  # step 5
            note = sign_note(body, signer)
            if not self._store.add_checkpoint(
                size=head.size,
                root=head.root_hash,
                note=note,
                created=self._clock(),
                vkey=signer.verifier.vkey,
            ):
                return None
            m.mark_checkpoint()
            _log.info("audit_checkpoint_signed", size=head.size, key=signer.verifier.vkey)
            return Checkpoint(
                origin=signer.name, size=head.size, root_hash=head.root_hash, text=note
            )

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest stored checkpoint, verified with this log's key; None if none."""
        last = self._store.latest_checkpoint()
        if last is None:
            return None
        return parse_checkpoint(last[2], [Verifier.parse(k) for k in self._store.verifier_keys()])

    def checkpoints(self) -> list[Checkpoint]:
        """Every stored checkpoint, oldest first, each verified with a recorded key."""
        verifiers = [Verifier.parse(k) for k in self._store.verifier_keys()]
        return [parse_checkpoint(note, verifiers) for _, _, _, note, _ in self._store.checkpoints()]

    # -- queries ---------------------------------------------------------------------------------
    def query(
        self, q: Query, *, cursor: str | None = None, limit: int = 100, fresh: bool = True
    ) -> tuple[list[StoredEvent], str | None]:
        """Events matching ``q``, ``limit`` at a time; pass the returned cursor for the next page.

        The query index is written at integration; with ``fresh`` (the default) pending
        entries are integrated first, so every acknowledged event can be found.
        """
        if not 1 <= limit <= 10_000:
            raise ConfigError("limit must be between 1 and 10000")
        if fresh and self._store.size() != self.size():
            self.integrate()  # the query index is written at integration
        after = decode_cursor(cursor) if cursor else None
        rows = self._store.query(q, after=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        out = [parse_leaf(leaf, index=idx) for idx, _, leaf in rows]
        nxt = encode_cursor(rows[-1][1], rows[-1][0]) if more and rows else None
        return out, nxt


def _event_part(leaf: bytes) -> bytes:
    """The canonical event inside a leaf (without ``received`` and ``schema``)."""
    d = orjson.loads(leaf)
    d.pop("received", None)
    d.pop("schema", None)
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS)
