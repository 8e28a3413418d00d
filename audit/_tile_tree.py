"""The Merkle tree stored as tlog tiles: nodes read from tiles (full ones cached), the
right edge rebuilt from them, and new leaves pushed into tiles as they are integrated.

Used by :class:`audit.log.AuditLog` only; tiles are TILE_WIDTH hashes wide, as in
C2SP tlog-tiles.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ._merkle import NodeSource, node_hash
from ._store import Store, TileRow
from .errors import ProofError

__all__ = ["TILE_HEIGHT", "TILE_WIDTH", "TileNodes", "frontier", "push_node"]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
_HASH = 32
_TILE_CACHE = 2048  # full tiles whose internal nodes are kept (about 16 KiB each)


class TileNodes:
    """Perfect-subtree hashes of the tree in ``store``, read from its tiles."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._full_tiles: dict[tuple[int, int], list[list[bytes]]] = {}
        self._edge_tiles: dict[int, dict[tuple[int, int], list[list[bytes]]]] = {}

    def source(self, size: int) -> NodeSource:
        """Perfect-subtree hashes for a tree of ``size``, from tiles: one read per tile.

        A full tile is immutable, so its internal nodes are computed once and kept in a
        bounded cache; the incomplete tiles at the right edge are read (and hashed) per
        call: at most 255 leaf hashes or tile roots per level.
        """
        local = self._edge_tiles.get(size)
        if local is None:  # the right edge of a tree of ``size`` never changes: keep it
            if len(self._edge_tiles) >= 8:
                _evict_one(self._edge_tiles)
            local = self._edge_tiles[size] = {}
        store = self._store
        full = self._full_tiles

        def tile_levels(tlevel: int, tile_idx: int) -> list[list[bytes]]:
            key = (tlevel, tile_idx)
            lv = full.get(key) or local.get(key)
            if lv is None:
                blob = store.tile(tlevel, tile_idx)
                if blob is not None:
                    lv = _levels([blob[i : i + _HASH] for i in range(0, len(blob), _HASH)])
                    if len(full) >= _TILE_CACHE:
                        _evict_one(full)
                    full[key] = lv
                else:
                    lo = tile_idx * TILE_WIDTH
                    if tlevel == 0:
                        items = store.leaf_hashes(lo, min(size, lo + TILE_WIDTH))
                    else:
                        items = store.tile_roots(tlevel - 1, lo, lo + TILE_WIDTH)
                    lv = local[key] = _levels(items)
            return lv

        def node(level: int, index: int) -> bytes:
            tlevel, r = divmod(level, TILE_HEIGHT)
            tile_idx, off = divmod(index << r, TILE_WIDTH)
            row = tile_levels(tlevel, tile_idx)[r]
            local_idx = off >> r
            if local_idx >= len(row):
                raise ProofError(f"tree node ({level}, {index}) is not integrated yet")
            return row[local_idx]

        return node

    def pending_rows(self, size: int) -> list[list[bytes]]:
        """The right edge of a tree of ``size`` not yet in full tiles: per tile level,
        the leaf hashes or tile roots past the last full tile."""
        levels = self._store.tile_levels()
        pending: list[list[bytes]] = []
        full0 = levels.get(0, 0)
        pending.append(self._store.leaf_hashes(full0 * TILE_WIDTH, size))
        level = 1
        while levels.get(level - 1, 0) > 0:
            below = levels.get(level - 1, 0)
            have = levels.get(level, 0)
            pending.append(self._store.tile_roots(level - 1, have * TILE_WIDTH, below))
            level += 1
        return pending


def frontier(node: NodeSource, size: int) -> list[bytes]:
    """The roots of the perfect subtrees of a tree of ``size``, largest first."""
    stack: list[bytes] = []
    lo = 0
    for bit in range(size.bit_length() - 1, -1, -1):
        if size >> bit & 1:
            stack.append(node(bit, lo >> bit))
            lo += 1 << bit
    return stack


def push_node(
    pending: list[list[bytes]], level: int, h: bytes, tile_idx: int, out: list[TileRow]
) -> None:
    """Add node ``h`` to the right edge ``pending`` at ``level``; a row that fills a tile
    goes to ``out`` and its root one tile level up."""
    while len(pending) <= level:
        pending.append([])
    row = pending[level]
    row.append(h)
    if len(row) == TILE_WIDTH:
        root = _perfect_root(row)
        out.append(TileRow(level, tile_idx, root, b"".join(row)))
        pending[level] = []
        push_node(pending, level + 1, root, tile_idx // TILE_WIDTH, out)


def _evict_one(cache: dict[Any, Any]) -> None:
    """Drop the oldest entry of a bounded cache shared by reader threads (best effort)."""
    # another thread may have emptied or resized it meanwhile
    with contextlib.suppress(StopIteration, RuntimeError):
        cache.pop(next(iter(cache)), None)


def _levels(items: list[bytes]) -> list[list[bytes]]:
    """Every level of the perfect subtrees over ``items``: ``[items, pairs, ...]`` up to
    the tile root (an odd trailing node has no parent yet)."""
    out = [items]
    level = items
    for _ in range(TILE_HEIGHT):
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        out.append(level)
    return out


def _perfect_root(items: list[bytes]) -> bytes:
    """Root of a perfect tree over ``items`` (a power-of-two count)."""
    level = items
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]
