"""The one security-headers middleware of Enclave's web services (the portal and the
audit service with its officer UI), as pure ASGI: no cost on the intake hot path.

On every HTTP response: the service's Content-Security-Policy, no framing, no MIME
sniffing, no referrer, an isolated opener, no camera/microphone/location, and HSTS on
HTTPS requests when the service asks for it. A handler's own header of the same name is
replaced, except ``Cache-Control``: a response that chose its caching (an immutable
tlog tile, a checkpoint that must be revalidated) keeps it alone; every other response
gets ``no-store``, since pages and API answers carry personal data (sessions,
enrolment secrets, access records) that no browser or proxy may keep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["SecurityHeaders"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_BASE: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")


class SecurityHeaders:
    """``csp``: the service's policy. ``hsts``: send HSTS on HTTPS requests, or on every
    request with ``always`` (a service behind a TLS-terminating proxy that sees http)."""

    def __init__(self, app: ASGIApp, *, csp: str, hsts: bool = False, always: bool = False):
        self.app = app
        self.base = [(b"content-security-policy", csp.encode("ascii")), *_BASE]
        self.hsts = hsts
        self.always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = list(self.base)
        if self.hsts and (self.always or scope.get("scheme") == "https"):
            extra.append(_HSTS)
        names = {k for k, _ in extra}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                own = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                cached = any(k.lower() == b"cache-control" for k, _ in own)
                message = {**message, "headers": own + extra + ([] if cached else [_NO_STORE])}
            await send(message)

        await self.app(scope, receive, send_with_headers)
