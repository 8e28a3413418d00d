"""C2SP tlog-tiles read endpoints (hash tiles and the checkpoint) for external verifiers.

``GET /tlog/checkpoint`` and ``GET /tlog/tile/<L>/<N>[.p/<W>]`` as in
https://c2sp.org/tlog-tiles: a tile at level ``L``, index ``N`` holds the hashes of
tree level ``8*L``, nodes ``256*N`` to ``256*N+W-1`` (``W`` = 256 for a full tile);
``N`` is written in groups of three digits, all but the last prefixed with ``x``.
With these a verifier can build any inclusion or consistency proof itself.

Entry bundles (``/tile/entries/...``) are not served: the entries hold personal data
(actors, addresses) that only officers may read, through the audited read API.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from ._errors import BadRequest, NotFound
from ._reads import latest_checkpoint_text
from ._state import ServiceState

__all__ = ["parse_tile_index", "tiles_router"]

_HEIGHT = 8
_WIDTH = 1 << _HEIGHT
_HASH = 32
_ELEM = re.compile(r"x\d{3}")
_LAST = re.compile(r"\d{3}")


def parse_tile_index(path: str) -> tuple[int, int | None]:
    """``x001/x234/067[.p/W]`` -> (1234067, W or None); BadRequest on anything else."""
    width: int | None = None
    if ".p/" in path:
        path, _, w = path.partition(".p/")
        if not w.isdigit() or w.startswith("0") or not 1 <= int(w) < _WIDTH:
            raise BadRequest(f"partial tile width {w[:8]!r} must be 1 to 255", reason="bad_tile")
        width = int(w)
    parts = path.split("/")
    if (
        not parts
        or not _LAST.fullmatch(parts[-1])
        or not all(_ELEM.fullmatch(p) for p in parts[:-1])
        or len(parts) > 7
    ):
        raise BadRequest(f"{path[:40]!r} is not a tile index like x001/x234/067", reason="bad_tile")
    n = 0
    for p in parts:
        n = n * 1000 + int(p.lstrip("x"))
    if len(parts) > 1 and parts[0] == "x000":
        raise BadRequest("a tile index has no leading zero groups", reason="bad_tile")
    return n, width


def _tile_hashes(st: ServiceState, level: int, index: int, width: int) -> bytes:
    size = int(st.log.size())  # integrated size: nothing beyond it is served
    available = size >> (_HEIGHT * level)  # nodes at tree level 8*level
    if _WIDTH * index + width > available:
        raise NotFound(f"tile {level}/{index} of width {width} is beyond the tree ({size} entries)")
    store = st.log.store
    lo = index * _WIDTH
    if width == _WIDTH:
        full = store.tile(level, index)
        if full is not None:
            return bytes(full)
    if level == 0:
        hashes = store.leaf_hashes(lo, lo + width)
    else:
        hashes = store.tile_roots(level - 1, lo, lo + width)
    if len(hashes) != width:
        raise NotFound(f"tile {level}/{index} of width {width} is not integrated yet")
    return b"".join(hashes)


def tiles_router() -> APIRouter:
    r = APIRouter(tags=["public: C2SP tlog-tiles"])

    @r.get(
        "/tlog/checkpoint",
        response_class=PlainTextResponse,
        summary="The latest signed checkpoint (tlog-tiles layout)",
    )
    async def checkpoint(request: Request) -> PlainTextResponse:
        st: ServiceState = request.app.state.audit
        text = await latest_checkpoint_text(st)
        return PlainTextResponse(
            text, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-cache"}
        )

    @r.get(
        "/tlog/tile/{level}/{index:path}",
        summary="A hash tile: level L, index N (x001/x234/067), optionally .p/W partial",
        response_class=Response,
    )
    async def tile(request: Request, level: str, index: str) -> Response:
        st: ServiceState = request.app.state.audit
        if level not in {str(i) for i in range(8)}:
            raise NotFound(
                "only hash tiles of levels 0 to 7 are served here (entry bundles hold "
                "personal data: use the officers' read API)"
            )
        n, width = parse_tile_index(index)
        data = await st.call(_tile_hashes, st, int(level), n, width or _WIDTH)
        cache = "public, max-age=31536000, immutable"
        return Response(
            data, media_type="application/octet-stream", headers={"Cache-Control": cache}
        )

    return r
