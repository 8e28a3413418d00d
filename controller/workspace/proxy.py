"""A JupyterHub proxy that runs inside the hub's own process, for the local backend.

Configure a hub with ``c.JupyterHub.proxy_class =
"controller.workspace.proxy.InProcessProxy"`` (``make_hub_config`` does when the site
names no proxy command). The hub's public address is then served by the hub process
itself, on its event loop: no configurable-http-proxy beside each hub. Measured
(``benchmarks/workspace.py``): the node proxy cost each idle enclave 53 MB of
resident memory; this adds under 1 MB to the hub, which already imports every
module it uses (tornado's HTTP client and WebSocket code).

What it does, as configurable-http-proxy does for JupyterHub: the routing table the
hub manages (``add_route``/``delete_route``/``get_all_routes``), the longest
matching route prefix by whole path segments, HTTP request and response bodies
streamed through (a few 64 KiB chunks held at a time), WebSocket connections relayed
message by message, the
route's ``last_activity`` kept for the hub's activity tracking. What it does on
purpose, where configurable-http-proxy does not:

* a path with a ``.`` or ``..`` segment (also percent-encoded) is refused with 400:
  routing and the server behind could otherwise read one path two ways; so is a
  request target that is not a path (``GET http://elsewhere/ HTTP/1.1``);
* ``X-Real-IP`` is set to the connection's peer and ``X-Forwarded-For`` gets it
  appended: tornado (the hub, the single-user server) believes ``X-Real-IP`` first,
  so a client could otherwise write any address into the hub's audit records;
* hop-by-hop headers (RFC 9110 7.6.1, and those ``Connection`` names) are dropped
  both ways.

The trade-off: a hub restart also drops the open connections (JupyterLab
reconnects its WebSockets by itself), and proxied bytes share the hub's event loop.
The Kubernetes backend keeps configurable-http-proxy in its own pod.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from asyncio import Future
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
from jupyterhub.proxy import Proxy
from multidict import CIMultiDict
from tornado import httputil
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.routing import Matcher, PathMatches, Rule, RuleRouter
from tornado.web import Application, RequestHandler, stream_request_body
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketHandler,
    websocket_connect,
)
from yarl import URL

__all__ = ["InProcessProxy", "Route", "RouteTable", "forwarded_headers"]

#: Headers meaningful for one connection only (RFC 9110 7.6.1), never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: The WebSocket handshake's own headers: each side of the relay makes its own.
_HANDSHAKE = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-accept",
    }
)
#: Largest request or response body, and largest WebSocket message, relayed. The
#: single-user server bounds what it sends (the tier's screen budget); this bounds
#: what a client can make the hub hold.
MAX_BODY = 1 << 30
CHUNK = 1 << 16
#: Request-body chunks held between the client and the server behind.
BODY_QUEUE = 4
MAX_MESSAGE = 256 << 20
CONNECT_TIMEOUT_S = 20.0
#: Long enough for an event stream (the hub's spawn progress) or a slow export.
REQUEST_TIMEOUT_S = 3600.0
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")
_UNANSWERED = "The server behind this address is not answering; try again shortly."
_ERROR_PAGE = (
    "<!doctype html><title>{code} {phrase}</title>"
    '<h1>{code} {phrase}</h1><p>{text}</p><p><a href="/hub/home">Back to the hub</a></p>'
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Route:
    """One route: requests under ``routespec`` go to ``target`` (``scheme://host:port``)."""

    routespec: str
    target: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_jupyterhub(self) -> dict[str, Any]:
        return {"routespec": self.routespec, "target": self.target, "data": dict(self.data)}


class RouteTable:
    """Routespecs (``/`` or ``/path/``) to routes; a path matches whole segments."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(self, route: Route) -> None:
        if not route.routespec.startswith("/") or not route.routespec.endswith("/"):
            raise ValueError(f"a routespec starts and ends with '/', not {route.routespec!r}")
        scheme = urlsplit(route.target).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"a route's target is an http(s) URL, not {route.target!r}")
        self._routes[route.routespec] = route

    def remove(self, routespec: str) -> Route | None:
        return self._routes.pop(routespec, None)

    def get(self, routespec: str) -> Route | None:
        return self._routes.get(routespec)

    def all(self) -> dict[str, Route]:
        return dict(self._routes)

    def match(self, path: str) -> Route | None:
        """The route with the longest routespec that ``path`` lies under, if any.

        ``/user/ann`` and ``/user/ann/x`` lie under ``/user/ann/``; ``/user/anna``
        does not."""
        best: Route | None = None
        for spec, route in self._routes.items():
            if (path.startswith(spec) or path + "/" == spec) and (
                best is None or len(spec) > len(best.routespec)
            ):
                best = route
        return best


def ambiguous_path(path: str) -> bool:
    """True for a path with a ``.`` or ``..`` segment, raw or percent-encoded."""
    return bool(_DOT_SEGMENT.search(path) or _DOT_SEGMENT.search(unquote(path)))


def _tokens(values: list[str]) -> list[str]:
    """The comma-separated tokens of a header's values (``Connection``, subprotocols)."""
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def forwarded_headers(
    incoming: httputil.HTTPHeaders, *, peer: str, proto: str, drop: frozenset[str] = frozenset()
) -> httputil.HTTPHeaders:
    """``incoming`` as the server behind the proxy gets it: hop-by-hop headers (and
    ``drop``) removed, the peer appended to ``X-Forwarded-For`` and set as ``X-Real-IP``."""
    named = {t.lower() for t in _tokens(incoming.get_list("Connection"))}
    out = httputil.HTTPHeaders()
    for name, value in incoming.get_all():
        low = name.lower()
        if low in HOP_BY_HOP or low in named or low in drop or low == "x-real-ip":
            continue
        if low.startswith("x-forwarded-"):
            continue
        out.add(name, value)
    before = ", ".join(incoming.get_list("X-Forwarded-For"))
    out["X-Forwarded-For"] = f"{before}, {peer}" if before else peer
    out["X-Real-IP"] = peer
    out["X-Forwarded-Proto"] = proto
    if "Host" in incoming:
        out["X-Forwarded-Host"] = incoming["Host"]
    return out


class _Shared:
    """What every handler of one proxy needs."""

    def __init__(self, routes: RouteTable, session: aiohttp.ClientSession, log: Any) -> None:
        self.routes = routes
        self.session = session
        self.log = log

    def touch(self, route: Route) -> None:
        route.data["last_activity"] = _now()


class _Base(RequestHandler):
    shared: _Shared
    route: Route | None

    def initialize(self, shared: _Shared) -> None:
        self.shared = shared
        self.route = None

    def compute_etag(self) -> str | None:
        return None  # the server behind decides caching; never answer 304 for it

    def _resolve(self) -> Route | None:
        """The request's route, or None with an error answered."""
        path = self.request.path
        if not self.request.uri or not self.request.uri.startswith("/"):
            self._error(400, "The request names an address, not a path; a path is expected.")
            return None
        if ambiguous_path(path):
            self._error(
                400, "The address has a '.' or '..' segment; which path it means is unclear."
            )
            return None
        route = self.shared.routes.match(path)
        if route is None:
            self._error(404, "Nothing is served at this address.")
        return route

    def _target_url(self, route: Route, *, websocket: bool = False) -> str:
        url = route.target.rstrip("/") + self.request.uri
        if websocket:
            url = "ws" + url[len("http") :]
        return url

    def _headers_out(self, drop: frozenset[str] = frozenset()) -> httputil.HTTPHeaders:
        return forwarded_headers(
            self.request.headers,
            peer=self.request.remote_ip or "",
            proto=self.request.protocol,
            drop=drop,
        )

    def _error(self, code: int, text: str) -> None:
        phrase = httputil.responses.get(code, "Error")
        self.clear()
        self.set_status(code)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", "default-src 'none'")
        self.set_header("Cache-Control", "no-store")
        self.finish(_ERROR_PAGE.format(code=code, phrase=phrase, text=text))


@stream_request_body
class _HttpHandler(_Base):
    """Forwards one HTTP request; streams its body on and the response back.

    The upstream request starts once the request's headers are in (``prepare``);
    its body follows chunk by chunk through a small queue, so a client sending
    slowly or sending much holds at most a few chunks in the hub, and waits.

    aiohttp, not tornado's client: tornado's adds ``Content-Type:
    application/x-www-form-urlencoded`` to a POST without one, and JupyterHub then
    refuses the request's cookie (a cross-site form post, to it)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    _forwarding: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        route = self.route = self._resolve()
        if route is None:
            return
        headers = self.request.headers
        has_body = int(headers.get("Content-Length", "0") or "0") > 0 or (
            "chunked" in headers.get("Transfer-Encoding", "").lower()
        )
        self._body: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=BODY_QUEUE)
        self._forwarding = asyncio.ensure_future(self._forward(route, has_body=has_body))

    async def data_received(self, chunk: bytes) -> None:
        await self._to_upstream(chunk)

    async def get(self) -> None:  # the whole request body has been received
        if self._forwarding is None:
            return
        await self._to_upstream(None)
        await self._forwarding

    head = post = put = patch = delete = options = get

    def on_connection_close(self) -> None:
        if self._forwarding is not None:
            self._forwarding.cancel()
        super().on_connection_close()

    async def _to_upstream(self, chunk: bytes | None) -> None:
        """Queue ``chunk`` (None: the end) unless the upstream request is over already
        (answered early, or failed): then what is left of the body is dropped."""
        forwarding = self._forwarding
        if forwarding is None or forwarding.done():
            return
        put = asyncio.ensure_future(self._body.put(chunk))
        await asyncio.wait({put, forwarding}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()

    async def _body_chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self._body.get()) is not None:
            yield chunk

    async def _forward(self, route: Route, *, has_body: bool) -> None:
        method = self.request.method or "GET"
        try:
            async with self.shared.session.request(
                method,
                URL(self._target_url(route), encoded=True),
                headers=CIMultiDict(self._headers_out().get_all()),
                data=self._body_chunks() if has_body else None,
                allow_redirects=False,
            ) as response:
                self.clear()
                for name in ("Content-Type", "Server", "Date"):
                    self.clear_header(name)
                self.set_status(response.status, response.reason or None)
                named = {t.lower() for t in _tokens(response.headers.getall("Connection", []))}
                for name, value in response.headers.items():
                    if name.lower() not in HOP_BY_HOP and name.lower() not in named:
                        self.add_header(name, value)
                async for chunk in response.content.iter_chunked(CHUNK):
                    self.write(chunk)
                    await self.flush()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            self.shared.log.warning("proxy: %s %s: %s", method, route.target, e)
            if not self._headers_written:
                self._error(503, _UNANSWERED)
            elif self.request.connection is not None:
                self.request.connection.close()
            return
        except StreamClosedError:
            return  # the client went away
        if response.status < 300:
            self.shared.touch(route)
        self.finish()


class _SocketHandler(WebSocketHandler, _Base):
    """Relays one WebSocket connection, after the server behind accepted it."""

    def initialize(self, shared: _Shared) -> None:  # type: ignore[override]
        _Base.initialize(self, shared)
        self._upstream: WebSocketClientConnection | None = None
        #: What the server behind sent before the client's handshake completed.
        self._early: list[str | bytes | None] | None = []

    def check_origin(self, origin: str) -> bool:
        return True  # the server behind checks Origin against Host; both are forwarded

    def get_compression_options(self) -> dict[str, Any] | None:
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        route = self.route = self._resolve()
        if route is None:
            return
        protocols = _tokens(self.request.headers.get_list("Sec-WebSocket-Protocol"))
        request = HTTPRequest(
            self._target_url(route, websocket=True),
            headers=self._headers_out(drop=_HANDSHAKE | {"sec-websocket-protocol"}),
            connect_timeout=CONNECT_TIMEOUT_S,
            request_timeout=CONNECT_TIMEOUT_S,
        )
        try:
            self._upstream = await websocket_connect(
                request,
                on_message_callback=self._from_upstream,
                max_message_size=MAX_MESSAGE,
                subprotocols=protocols or None,
            )
        except HTTPClientError as e:
            if e.code == 599:
                self._error(503, _UNANSWERED)
            else:
                self._error(e.code if 400 <= e.code < 600 else 502, "Refused.")
            return
        except OSError:
            self._error(503, _UNANSWERED)
            return
        self.shared.touch(route)
        await super().get(*args, **kwargs)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return self._upstream.selected_subprotocol if self._upstream else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        early, self._early = self._early or [], None
        for message in early:
            self._from_upstream(message)

    def _from_upstream(self, message: str | bytes | None) -> None:
        if self._early is not None:  # the client's handshake is not done yet
            self._early.append(message)
            return
        if message is None:  # the server behind closed
            code = self._upstream.close_code if self._upstream else None
            reason = self._upstream.close_reason if self._upstream else None
            self._upstream = None
            self.close(code, reason)
            return
        if self.route is not None:
            self.shared.touch(self.route)
        try:
            _sent(self.write_message(message, binary=isinstance(message, bytes)))
        except WebSocketClosedError:
            self._close_upstream()

    def on_message(self, message: str | bytes) -> None:
        if self._upstream is None:
            return
        if self.route is not None:
            self.shared.touch(self.route)
        try:
            _sent(self._upstream.write_message(message, binary=isinstance(message, bytes)))
        except WebSocketClosedError:
            self.close()

    def on_close(self) -> None:
        self._close_upstream()

    def on_connection_close(self) -> None:
        self._close_upstream()  # also when the client left during its handshake
        super().on_connection_close()

    def _close_upstream(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close(self.close_code, self.close_reason)


def _sent(done: Future[None]) -> None:
    """Consume a relayed message's outcome: a side that closed meanwhile is handled
    by its close callback, not logged as an unretrieved error."""
    done.add_done_callback(lambda f: f.cancelled() or f.exception())


class _UpgradeMatches(Matcher):
    """Matches a WebSocket upgrade request."""

    def match(self, request: httputil.HTTPServerRequest) -> dict[str, Any] | None:
        upgrade = request.headers.get("Upgrade", "")
        return {} if upgrade.lower() == "websocket" else None


class InProcessProxy(Proxy):  # type: ignore[misc]
    """The hub's proxy, served from the hub's process; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._routes = RouteTable()
        self._server: HTTPServer | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self.host_routing:
            raise ValueError("InProcessProxy routes by path; host routing is not supported")
        url = urlsplit(self.public_url)
        if url.scheme not in ("http", "https") or url.port is None:
            raise ValueError(
                f"the hub's public URL must name a scheme and a port, not {self.public_url!r}"
            )
        if url.path not in ("", "/"):
            raise ValueError(f"the hub's public URL must have no path, not {self.public_url!r}")
        ssl_options = None
        if url.scheme == "https":
            ssl_options = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_options.load_cert_chain(self.ssl_cert, self.ssl_key)
        # the client adds no header of its own, and passes bodies through as they are
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT_S, sock_read=REQUEST_TIMEOUT_S
            ),
            auto_decompress=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        shared = _Shared(self._routes, self._session, self.log)
        router = RuleRouter(
            [
                Rule(
                    _UpgradeMatches(),
                    Application(
                        [(r".*", _SocketHandler, {"shared": shared})],
                        websocket_max_message_size=MAX_MESSAGE,
                    ),
                ),
                Rule(PathMatches(r".*"), Application([(r".*", _HttpHandler, {"shared": shared})])),
            ]
        )
        self._server = HTTPServer(router, ssl_options=ssl_options, max_body_size=MAX_BODY)
        self._server.listen(url.port, url.hostname or "")
        self.log.info("In-process proxy serving %s", self.public_url)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def add_route(self, routespec: str, target: str, data: dict[str, Any]) -> None:
        self._routes.add(Route(routespec=routespec, target=target, data=dict(data or {})))

    async def delete_route(self, routespec: str) -> None:
        if self._routes.remove(routespec) is None:
            self.log.warning("Route %s already deleted", routespec)

    async def get_all_routes(self) -> dict[str, dict[str, Any]]:
        return {spec: route.as_jupyterhub() for spec, route in self._routes.all().items()}
