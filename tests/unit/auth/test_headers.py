"""The portal's one security-headers middleware, driven as plain ASGI (no server)."""

from __future__ import annotations

import asyncio
from typing import Any

from auth._app import PORTAL_CSP, SecurityHeaders

Message = dict[str, Any]


def headers_of(
    own: list[tuple[bytes, bytes]], *, scheme: str = "https"
) -> dict[bytes, list[bytes]]:
    """Every header (by lower-case name) a response of an app that sets ``own`` gets."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": own})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    middleware = SecurityHeaders(app, csp=PORTAL_CSP, hsts=True, always=False)
    asyncio.run(middleware({"type": "http", "scheme": scheme}, receive, send))
    out: dict[bytes, list[bytes]] = {}
    for k, v in sent[0]["headers"]:
        out.setdefault(k.lower(), []).append(v)
    return out


def test_a_page_is_not_stored_by_a_browser_or_proxy():
    assert headers_of([])[b"cache-control"] == [b"no-store"]


def test_an_immutable_response_keeps_its_own_caching_header_alone():
    own = [(b"cache-control", b"public, max-age=31536000, immutable")]
    assert headers_of(own)[b"cache-control"] == [b"public, max-age=31536000, immutable"]


def test_a_cross_origin_opener_cannot_script_a_portal_window():
    assert headers_of([])[b"cross-origin-opener-policy"] == [b"same-origin"]


def test_a_portal_page_cannot_use_the_camera_microphone_or_location():
    policy = headers_of([])[b"permissions-policy"][0]
    for feature in (b"camera=()", b"microphone=()", b"geolocation=()"):
        assert feature in policy


def test_a_handler_cannot_weaken_the_csp_or_framing_rules():
    h = headers_of([(b"content-security-policy", b"default-src *"), (b"x-frame-options", b"ALLOW")])
    assert h[b"x-frame-options"] == [b"DENY"]
    assert len(h[b"content-security-policy"]) == 1
    assert b"frame-ancestors 'none'" in h[b"content-security-policy"][0]


def test_hsts_only_over_tls():
    assert b"strict-transport-security" in headers_of([], scheme="https")
    assert b"strict-transport-security" not in headers_of([], scheme="http")
