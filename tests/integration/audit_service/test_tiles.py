"""C2SP tlog-tiles hash tiles: a verifier rebuilds the signed root from them alone."""

from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from audit import parse_checkpoint
from audit._note import Verifier
from audit.log import AuditLog
from audit.service._errors import BadRequest
from audit.service._tiles import parse_tile_index
from tests.harness.audit_service import sample_event


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def _root(hashes: list[bytes]) -> bytes:
    """RFC 9162 MTH over already-hashed leaves (written out here, independently)."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _node(_root(hashes[:k]), _root(hashes[k:]))


def test_tiles_rebuild_the_checkpoint_root(client: TestClient, log: AuditLog) -> None:
    for _ in range(6):
        log.append([sample_event() for _ in range(100)])
    log.integrate()
    cp_text = log.checkpoint().text
    r = client.get("/tlog/checkpoint")
    assert r.text == cp_text
    cp = parse_checkpoint(r.text, [Verifier.parse(client.get("/v1/key").text.strip())])
    assert cp.size == 600  # 2 full level-0 tiles + 88 leaves
    t0 = client.get("/tlog/tile/0/000")
    t1 = client.get("/tlog/tile/0/001")
    t2 = client.get("/tlog/tile/0/002.p/88")
    up = client.get("/tlog/tile/1/000.p/2")
    for resp in (t0, t1, t2, up):
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/octet-stream"
    # an immutable tile stays cacheable: no no-store beside its own caching header
    assert t0.headers.get_list("cache-control") == ["public, max-age=31536000, immutable"]
    leaves = [t0.content[i : i + 32] for i in range(0, len(t0.content), 32)]
    assert leaves[0] == hashlib.sha256(b"\x00" + log.entry(0)).digest()
    level8 = [up.content[:32], up.content[32:]]
    assert level8[0] == _root(leaves)
    tail = [t2.content[i : i + 32] for i in range(0, len(t2.content), 32)]
    assert _node(_node(level8[0], level8[1]), _root(tail)) == cp.root_hash


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/tlog/tile/0/003", 404),  # beyond the tree
        ("/tlog/tile/0/002.p/89", 404),
        ("/tlog/tile/1/000", 404),
        ("/tlog/tile/0/12", 422),
        ("/tlog/tile/0/002.p/0", 422),
        ("/tlog/tile/entries/000", 404),  # entry bundles are not public
        ("/tlog/tile/9/000", 404),
    ],
)
def test_bad_or_missing_tiles(client: TestClient, log: AuditLog, path: str, status: int) -> None:
    log.append([sample_event() for _ in range(600)])
    log.integrate()
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["error"]


def test_tile_index_encoding() -> None:
    assert parse_tile_index("x001/x234/067") == (1234067, None)
    assert parse_tile_index("067.p/8") == (67, 8)
    for bad in ("67", "x067", "x000/001", "001/x002", "001.p/256", "001.p/08", ""):
        with pytest.raises(BadRequest):
            parse_tile_index(bad)
