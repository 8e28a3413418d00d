"""RFC 9162 Merkle tree hashing, proof construction and proof verification.

Pure functions over hashes. Leaves are ``SHA-256(0x00 || entry)``, interior nodes
``SHA-256(0x01 || left || right)``; the empty tree's root is ``SHA-256("")``.

Proof *construction* needs only a way to read the hash of any perfect subtree, a
:data:`NodeSource` ``(level, index) -> hash`` for the subtree covering leaves
``[index * 2**level, (index + 1) * 2**level)``; the stores answer it from tiles in a
bounded number of reads, which makes proofs O(log n) reads. Proof *verification*
follows RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from .errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "NodeSource",
    "TreeBuilder",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_root",
    "verify_consistency",
    "verify_inclusion",
]

NodeSource = Callable[[int, int], bytes]
"""``node(level, index)``: the hash of a perfect subtree of ``2**level`` leaves."""

_sha256 = hashlib.sha256
EMPTY_ROOT: Final[bytes] = _sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _largest_pow2_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def subtree_root(node: NodeSource, lo: int, hi: int) -> bytes:
    """MTH of leaves ``[lo, hi)``, where ``lo`` is aligned as RFC 9162's recursion makes it."""
    n = hi - lo
    if n <= 0:
        raise ProofError(f"empty subtree [{lo}, {hi})")
    if n & (n - 1) == 0 and lo % n == 0:
        return node(n.bit_length() - 1, lo // n)
    k = _largest_pow2_below(n)
    return node_hash(subtree_root(node, lo, lo + k), subtree_root(node, lo + k, hi))


def inclusion_proof(index: int, size: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(index, D[size]), leaf to root order."""
    if not 0 <= index < size:
        raise ProofError(f"index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root, collecting siblings; reverse at the end.
    while hi - lo > 1:
        k = _largest_pow2_below(hi - lo)
        if index < lo + k:
            path.append(subtree_root(node, lo + k, hi))
            hi = lo + k
        else:
            path.append(subtree_root(node, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def consistency_proof(old_size: int, size: int, node: NodeSource) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(old_size, D[size]); empty when old_size is 0 or size."""
    if not 0 <= old_size <= size:
        raise ProofError(f"cannot prove consistency from size {old_size} to size {size}")
    if old_size == 0 or old_size == size:
        return []
    out: list[bytes] = []
    lo, hi, m, whole = 0, size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                out.append(subtree_root(node, lo, hi))
            break
        k = _largest_pow2_below(n)
        if m <= k:
            out.append(subtree_root(node, lo + k, hi))
            hi = lo + k
        else:
            out.append(subtree_root(node, lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    out.reverse()
    return out


def _eq(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 2.1.3.2: raise :class:`ProofError` unless ``proof`` proves inclusion.

    1. Fail if ``index >= size``.
    2. ``fn = index``, ``sn = size - 1``.
    3. ``r = leaf_hash``.
    4. For each ``p`` in the proof: fail if ``sn == 0``; if ``LSB(fn)`` or ``fn == sn``:
       ``r = H(0x01||p||r)`` and, unless ``LSB(fn)``, shift ``fn``, ``sn`` right until
       ``LSB(fn)`` or ``fn == 0``; otherwise ``r = H(0x01||r||p)``; then shift both once.
    5. Succeed iff ``sn == 0`` and ``r == root``.
    """
    if not 0 <= index < size:  # step 1
        raise ProofError(f"index {index} is not below tree size {size}")
    fn, sn = index, size - 1  # step 2
    r = leaf_hash  # step 3
    for p in proof:  # step 4
        if len(p) != 32:
            raise ProofError("proof hash is not 32 bytes")
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 5
        raise ProofError("inclusion proof is too short")
    if not _eq(r, root):
        raise ProofError("inclusion proof does not lead to the root hash")


def verify_consistency(
    *, old_size: int, size: int, proof: Sequence[bytes], old_root: bytes, root: bytes
) -> None:
    """RFC 9162 2.1.4.2: raise :class:`ProofError` unless ``proof`` shows the tree of
    ``size`` (root ``root``) extends the tree of ``old_size`` (root ``old_root``).

    0. Trivial cases: ``old_size == size`` needs an empty proof and equal roots;
       ``old_size == 0`` needs an empty proof (every tree extends the empty one).
    1. Fail on an empty proof.
    2. If ``old_size`` is a power of two, prepend ``old_root`` to the proof.
    3. ``fn = old_size - 1``, ``sn = size - 1``.
    4. While ``LSB(fn)``, shift ``fn`` and ``sn`` right.
    5. ``fr = sr = proof[0]``.
    6. For each later ``c``: fail if ``sn == 0``; if ``LSB(fn)`` or ``fn == sn``:
       ``fr = H(0x01||c||fr)``, ``sr = H(0x01||c||sr)`` and, unless ``LSB(fn)``, shift
       both right until ``LSB(fn)`` or ``fn == 0``; otherwise ``sr = H(0x01||sr||c)``;
       then shift both once.
    7. Succeed iff ``fr == old_root``, ``sr == root`` and ``sn == 0``.
    """
    if not 0 <= old_size <= size:
        raise ProofError(f"old size {old_size} is larger than size {size}")
    if any(len(p) != 32 for p in proof):
        raise ProofError("proof hash is not 32 bytes")
    if old_size == size:  # step 0
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if not _eq(old_root, root):
            raise ProofError("roots differ at the same tree size")
        return
    if old_size == 0:
        if proof:
            raise ProofError("consistency proof from the empty tree must be empty")
        return
    if not proof:  # step 1
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # step 2
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1  # step 3
    while fn & 1:  # step 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # step 5
    for c in path[1:]:  # step 6
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # step 7
        raise ProofError("consistency proof is too short")
    if not _eq(fr, old_root):
        raise ProofError("consistency proof does not lead to the old root")
    if not _eq(sr, root):
        raise ProofError("consistency proof does not lead to the new root")


class TreeBuilder:
    """Streaming RFC 9162 root computation in O(log n) memory (a compact range from 0).

    ``append`` costs one hash amortised; ``root()`` costs O(log n). Used by the offline
    verifier to recompute every root as it reads the log once, in order.
    """

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[bytes] = []  # perfect subtrees, largest first
        self.size = 0

    def append(self, lh: bytes) -> None:
        """Add one leaf hash."""
        stack = self._stack
        n = self.size
        stack.append(lh)
        while n & 1:
            r = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + r).digest()
            n >>= 1
        self.size += 1

    def extend(self, hashes: Iterable[bytes]) -> None:
        """Add many leaf hashes in order."""
        for h in hashes:
            self.append(h)

    def root(self) -> bytes:
        """The root of the tree of the leaves added so far."""
        if not self._stack:
            return EMPTY_ROOT
        r = self._stack[-1]
        for h in reversed(self._stack[:-1]):
            r = node_hash(h, r)
        return r


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """The root over ``hashes`` (convenience for small trees)."""
    t = TreeBuilder()
    t.extend(hashes)
    return t.root()
