"""RFC 9162 tree hashing and proofs: reference vectors and properties against a naive
recomputation straight from the RFC's recursive definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit._merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from audit.errors import ProofError

# The RFC 6962/9162 reference tree (certificate-transparency test data).
INPUTS = [
    bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")
] + [bytes.fromhex("606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
H = bytes.fromhex


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


# -- the naive reference: RFC 9162 section 2.1 written as literally as possible ---------------
def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + d[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _sha(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def naive_proof(m: int, d: list[bytes]) -> list[bytes]:
    return subproof(m, d, True)


# -- a node source over a list of entries (what the stores provide from tiles) --------------
def node_source(entries: list[bytes]):  # type: ignore[no-untyped-def]
    levels = [[leaf_hash(e) for e in entries]]
    while len(levels[-1]) > 1:
        prev = levels[-1]
        levels.append([_sha(b"\x01" + prev[i] + prev[i + 1]) for i in range(0, len(prev) - 1, 2)])

    def node(level: int, index: int) -> bytes:
        return levels[level][index]

    return node


def test_reference_tree_roots() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    for n in range(1, 9):
        assert root_from_leaf_hashes([leaf_hash(x) for x in INPUTS[:n]]).hex() == ROOTS[n - 1]
    assert ROOTS[7] == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


@pytest.mark.parametrize(
    ("index", "size", "proof"),
    [
        (0, 1, []),
        (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
        (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    ],
)  # fmt: skip
def test_reference_inclusion_proofs(index: int, size: int, proof: list[str]) -> None:
    node = node_source(INPUTS[:size])
    assert [p.hex() for p in inclusion_proof(index, size, node)] == proof
    verify_inclusion(
        leaf_hash=leaf_hash(INPUTS[index]),
        index=index,
        size=size,
        proof=[H(p) for p in proof],
        root=H(ROOTS[size - 1]),
    )


@pytest.mark.parametrize(
    ("old", "size", "proof"),
    [
        (1, 1, []),
        (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
        (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
        (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    ],
)  # fmt: skip
def test_reference_consistency_proofs(old: int, size: int, proof: list[str]) -> None:
    node = node_source(INPUTS[:size])
    assert [p.hex() for p in consistency_proof(old, size, node)] == proof
    verify_consistency(
        old_size=old,
        size=size,
        proof=[H(p) for p in proof],
        old_root=H(ROOTS[old - 1]),
        root=H(ROOTS[size - 1]),
    )
    with pytest.raises(ProofError):
        verify_consistency(
            old_size=old,
            size=size,
            proof=[H(p) for p in proof],
            old_root=H(ROOTS[old - 2]),
            root=H(ROOTS[size - 1]),
        )


ENTRIES = [f"entry-{i}".encode() for i in range(300)]
NODE = node_source(ENTRIES)
MAX = len(ENTRIES)


def test_every_size_up_to_300_matches_naive_roots_and_every_proof_verifies() -> None:
    """Every tree size 1..300: the streaming root equals MTH; every leaf's proof (from the
    node source) equals the RFC's PATH and verifies; consistency from every 7th size too."""
    tb = TreeBuilder()
    roots = [EMPTY_ROOT]
    for n in range(1, MAX + 1):
        tb.append(leaf_hash(ENTRIES[n - 1]))
        roots.append(tb.root())
    for n in range(1, MAX + 1):
        if n <= 64 or n % 17 == 0:
            assert roots[n] == mth(ENTRIES[:n])
        for i in range(n):
            proof = inclusion_proof(i, n, NODE)
            verify_inclusion(
                leaf_hash=leaf_hash(ENTRIES[i]), index=i, size=n, proof=proof, root=roots[n]
            )
        for m in range(0, n + 1, 7):
            verify_consistency(
                old_size=m,
                size=n,
                proof=consistency_proof(m, n, NODE),
                old_root=roots[m],
                root=roots[n],
            )
    assert roots[MAX] == mth(ENTRIES)


sizes = st.integers(min_value=1, max_value=MAX)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_inclusion_proofs_equal_naive_and_mutations_fail(data: st.DataObject) -> None:
    n = data.draw(sizes)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(i, n, NODE)
    assert proof == path(i, ENTRIES[:n])
    root = mth(ENTRIES[:n])
    lh = leaf_hash(ENTRIES[i])
    verify_inclusion(leaf_hash=lh, index=i, size=n, proof=proof, root=root)
    mutants: list[tuple[bytes, int, list[bytes], bytes]] = [
        (leaf_hash(b"other"), i, proof, root),  # another leaf
        (lh, i, proof, _sha(root)),  # another root
        (lh, i, [*proof, _sha(b"x")], root),  # one hash too many
    ]
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        flipped = bytearray(proof[k])
        flipped[data.draw(st.integers(0, 31))] ^= 1 << data.draw(st.integers(0, 7))
        mutants.append(
            (lh, i, [*proof[:k], bytes(flipped), *proof[k + 1 :]], root)
        )  # a bit flipped
        mutants.append((lh, i, proof[:-1], root))  # one hash missing
        if len(proof) > 1:
            mutants.append((lh, i, list(reversed(proof)), root))  # order changed
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
        mutants.append((lh, j, proof, root))  # claimed at another index
    for m_lh, m_i, m_proof, m_root in mutants:
        with pytest.raises(ProofError):
            verify_inclusion(leaf_hash=m_lh, index=m_i, size=n, proof=m_proof, root=m_root)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_consistency_proofs_equal_naive_and_mutations_fail(data: st.DataObject) -> None:
    n = data.draw(sizes)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(m, n, NODE)
    assert proof == ([] if m == n else naive_proof(m, ENTRIES[:n]))
    old_root, root = mth(ENTRIES[:m]), mth(ENTRIES[:n])
    verify_consistency(old_size=m, size=n, proof=proof, old_root=old_root, root=root)
    forked = mth([*ENTRIES[: m - 1], b"forked"])  # a different history of the same size
    mutants: list[tuple[list[bytes], bytes, bytes]] = [
        (proof, forked, root),
        (proof, old_root, _sha(root)),
        ([*proof, _sha(b"x")], old_root, root),
    ]
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        flipped = bytearray(proof[k])
        flipped[0] ^= 0x80
        mutants.append(([*proof[:k], bytes(flipped), *proof[k + 1 :]], old_root, root))
        mutants.append((proof[:-1], old_root, root))
    for m_proof, m_old, m_root in mutants:
        with pytest.raises(ProofError):
            verify_consistency(old_size=m, size=n, proof=m_proof, old_root=m_old, root=m_root)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ProofError):
        inclusion_proof(5, 5, NODE)
    with pytest.raises(ProofError):
        consistency_proof(6, 5, NODE)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash=leaf_hash(b""), index=3, size=3, proof=[], root=EMPTY_ROOT)
    with pytest.raises(ProofError):  # empty proof for a real extension
        verify_consistency(
            old_size=3, size=5, proof=[], old_root=mth(ENTRIES[:3]), root=mth(ENTRIES[:5])
        )
