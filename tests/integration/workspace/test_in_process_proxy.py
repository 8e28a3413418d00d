"""The hub's in-process proxy against real servers: HTTP, streaming, WebSockets, attacks.

The proxy (``controller.workspace.proxy.InProcessProxy``) and the servers behind it
(tornado applications standing in for the hub and a single-user server) run on one
event loop in a thread of their own; the tests talk to the proxy over real sockets
with httpx and the ``websockets`` client. The hub itself runs behind this proxy in
the local backend's tests (tests/integration/local) and the end-to-end journey.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketHandler
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from controller.workspace.proxy import MAX_MESSAGE, InProcessProxy
from tests.harness.audit_service import free_port

KERNEL_PROTOCOL = "v1.kernel.websocket.jupyter.org"
BIG = 5 * 1024 * 1024


@dataclass
class Seen:
    """What the servers behind the proxy received."""

    requests: list[dict[str, Any]] = field(default_factory=list)


class _Echo(RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def initialize(self, seen: Seen, name: str) -> None:
        self.seen = seen
        self.name = name

    def _echo(self, *args: Any) -> None:
        record = {
            "server": self.name,
            "method": self.request.method,
            "uri": self.request.uri,
            "headers": [[k, v] for k, v in self.request.headers.get_all()],
            "body": self.request.body.decode(),
            # what a tornado server behind a proxy (xheaders, as JupyterHub) believes
            "remote_ip": self.request.remote_ip,
        }
        self.seen.requests.append(record)
        self.set_cookie("first", "1", path="/")
        self.set_cookie("second", "2", path="/user/ann/")
        if self.request.method != "HEAD":
            self.write(json.dumps(record))

    get = head = post = put = patch = delete = options = _echo


class _Digest(RequestHandler):
    def post(self) -> None:
        self.write(
            {
                "bytes": len(self.request.body),
                "sha256": hashlib.sha256(self.request.body).hexdigest(),
                "transfer_encoding": self.request.headers.get("Transfer-Encoding"),
            }
        )


class _Big(RequestHandler):
    async def get(self) -> None:
        for i in range(BIG // 65536):
            self.write(bytes([i % 256]) * 65536)
            await self.flush()


class _Gzipped(RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Encoding", "gzip")
        self.set_header("Content-Type", "text/plain")
        self.write(gzip.compress(b"already compressed by the server behind"))


class _Redirect(RequestHandler):
    def get(self) -> None:
        self.redirect("/hub/login?next=%2Fuser%2Fann%2F", status=302)


class _Socket(WebSocketHandler):
    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return KERNEL_PROTOCOL if KERNEL_PROTOCOL in subprotocols else None

    def open(self, *args: Any) -> None:
        self.write_message(f"hello {self.request.headers.get('Cookie', '')}")

    def on_message(self, message: str | bytes) -> None:
        if message == "bye":
            self.close(4001, "asked to")
        else:
            self.write_message(message, binary=isinstance(message, bytes))


@dataclass
class Proxied:
    url: str
    proxy: InProcessProxy
    loop: asyncio.AbstractEventLoop
    seen: Seen

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def route(self, spec: str) -> dict[str, Any]:
        routes: dict[str, dict[str, Any]] = self.call(self.proxy.get_all_routes())
        return routes[spec]


@pytest.fixture(scope="module")
def proxied() -> Iterator[Proxied]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    seen = Seen()
    ports = {"hub": free_port(), "ann": free_port(), "dead": free_port()}
    public = free_port()

    async def serve() -> list[HTTPServer]:
        servers = []
        for name in ("hub", "ann"):
            app = Application(
                [
                    (r"/user/ann/big", _Big),
                    (r"/user/ann/digest", _Digest),
                    (r"/user/ann/gz", _Gzipped),
                    (r"/user/ann/api/kernels/k/channels", _Socket),
                    (r"/hub/oauth_login", _Redirect),
                    (r".*", _Echo, {"seen": seen, "name": name}),
                ],
                websocket_max_message_size=MAX_MESSAGE,  # as a server that allows more
            )
            server = HTTPServer(app, xheaders=True, max_body_size=BIG * 8)
            server.listen(ports[name], "127.0.0.1")
            servers.append(server)
        return servers

    servers = asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=30)
    proxy = InProcessProxy(public_url=f"http://127.0.0.1:{public}")
    p = Proxied(url=f"http://127.0.0.1:{public}", proxy=proxy, loop=loop, seen=seen)
    p.call(proxy.start())
    p.call(proxy.add_route("/", f"http://127.0.0.1:{ports['hub']}", {"hub": True}))
    p.call(proxy.add_route("/user/ann/", f"http://127.0.0.1:{ports['ann']}", {"user": "ann"}))
    p.call(proxy.add_route("/user/gone/", f"http://127.0.0.1:{ports['dead']}", {"user": "gone"}))
    try:
        yield p
    finally:
        p.call(proxy.stop())
        for server in servers:
            loop.call_soon_threadsafe(server.stop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


def _raw_get(url: str, path: str) -> tuple[str, str]:
    """GET ``path`` exactly as written (status line and headers; body)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return head, body


def _last(p: Proxied) -> dict[str, Any]:
    return p.seen.requests[-1]


def _header(record: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in record["headers"] if k.lower() == name.lower()]


def test_requests_reach_the_server_of_the_longest_matching_route(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        assert client.get("/user/ann/lab?x=1").json()["server"] == "ann"
        assert _last(proxied)["uri"] == "/user/ann/lab?x=1"  # path and query as sent
        assert client.get("/user/anna/lab").json()["server"] == "hub"
        assert client.get("/hub/home").json()["server"] == "hub"


def test_a_dot_segment_cannot_carry_a_request_to_another_users_server(
    proxied: Proxied,
) -> None:
    before = len(proxied.seen.requests)
    for path in ("/user/ann/../gone/api", "/user/ann/%2e%2e/gone/api", "/user/ann/./x"):
        # a browser or httpx would remove the dot segments itself: send the raw target
        head, body = _raw_get(proxied.url, path)
        assert head.startswith("HTTP/1.1 400 "), (path, head)
        assert "content-security-policy: default-src 'none'" in head.lower()
        assert "segment" in body
    assert all(
        ".." not in rec["uri"] and "%2e" not in rec["uri"] for rec in proxied.seen.requests[before:]
    )


def test_an_absolute_request_target_cannot_send_the_proxy_elsewhere(proxied: Proxied) -> None:
    before = len(proxied.seen.requests)
    head, body = _raw_get(proxied.url, "http://169.254.169.254/latest/meta-data/")
    assert head.startswith("HTTP/1.1 400 "), head
    assert "a path is expected" in body
    assert len(proxied.seen.requests) == before


def test_a_client_cannot_spoof_its_address_in_what_the_hub_records(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        client.get(
            "/hub/api/user",
            headers={"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "203.0.113.9"},
        )
    record = _last(proxied)
    assert record["remote_ip"] == "127.0.0.1"
    assert _header(record, "X-Real-Ip") == ["127.0.0.1"]


def test_hop_by_hop_headers_are_not_forwarded(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        r = client.get(
            "/user/ann/api/contents",
            headers={"Connection": "keep-alive, X-Hop", "X-Hop": "secret", "TE": "trailers"},
        )
    assert r.status_code == 200
    record = _last(proxied)
    assert _header(record, "X-Hop") == []
    assert _header(record, "TE") == []


def test_a_post_without_a_content_type_reaches_the_hub_without_one(proxied: Proxied) -> None:
    """JupyterHub refuses the cookie of a POST with a form content type (a cross-site
    form); a proxy that added one (tornado's client does) would sign everyone out."""
    with httpx.Client(base_url=proxied.url) as client:
        r = client.post("/hub/api/users/ann/server")
        assert r.status_code == 200
        assert _header(_last(proxied), "Content-Type") == []
        client.post("/hub/api/x", content=b'{"a": 1}', headers={"Content-Type": "application/json"})
    record = _last(proxied)
    assert _header(record, "Content-Type") == ["application/json"]
    assert record["body"] == '{"a": 1}'


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
def test_each_method_is_forwarded_with_its_body(proxied: Proxied, method: str) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        r = client.request(method, "/user/ann/api/contents/a.ipynb", content=b"cells")
    assert r.status_code == 200
    assert (_last(proxied)["method"], _last(proxied)["body"]) == (method, "cells")


def test_head_and_redirects_and_every_cookie_come_back_as_the_server_sent_them(
    proxied: Proxied,
) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        r = client.head("/user/ann/lab")
        assert r.status_code == 200
        assert r.content == b""
        r = client.get("/hub/oauth_login")
        assert r.status_code == 302
        assert r.headers["Location"] == "/hub/login?next=%2Fuser%2Fann%2F"
        r = client.get("/user/ann/tree")
    cookies = r.headers.get_list("Set-Cookie")
    assert [c.split(";")[0] for c in cookies] == ["first=1", "second=2"]


def test_a_large_response_arrives_whole_and_a_compressed_one_unchanged(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        body = client.get("/user/ann/big").content
        assert len(body) == BIG
        assert body[65536 * 3] == 3
        with client.stream("GET", "/user/ann/gz", headers={"Accept-Encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
    assert r.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == b"already compressed by the server behind"


def test_an_unanswering_server_gets_a_clear_503_page(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        r = client.get("/user/gone/lab")
    assert r.status_code == 503
    assert "not answering" in r.text


def test_a_successful_request_marks_its_route_active(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        client.get("/user/ann/api/status")
    first = proxied.route("/user/ann/")["data"]["last_activity"]
    with httpx.Client(base_url=proxied.url) as client:
        client.get("/user/ann/api/status")
    assert proxied.route("/user/ann/")["data"]["last_activity"] >= first
    assert proxied.route("/user/ann/")["data"]["user"] == "ann"
    assert "last_activity" not in proxied.route("/user/gone/")["data"]  # never answered


def test_websocket_messages_subprotocol_and_close_are_relayed(proxied: Proxied) -> None:
    ws_url = proxied.url.replace("http", "ws") + "/user/ann/api/kernels/k/channels"
    with connect(
        ws_url,
        subprotocols=[KERNEL_PROTOCOL],
        additional_headers={"Cookie": "session=abc"},
        max_size=MAX_MESSAGE,
    ) as ws:
        assert ws.subprotocol == KERNEL_PROTOCOL
        assert ws.recv(timeout=30) == "hello session=abc"  # the handshake's cookie went on
        ws.send("text")
        assert ws.recv(timeout=30) == "text"
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=30) == b"\x00\x01binary"
        big = "x" * (11 * 1024 * 1024)  # above tornado's default 10 MiB message limit
        ws.send(big)
        assert ws.recv(timeout=60) == big
        ws.send("bye")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "asked to")


def test_a_websocket_to_an_unanswering_server_is_refused_with_503(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.url) as client:
        r = client.get(
            "/user/gone/api/kernels/k/channels",
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            },
        )
    assert r.status_code == 503


def test_a_large_upload_is_streamed_to_the_server_whole(proxied: Proxied) -> None:
    body = os.urandom(4 * BIG)
    with httpx.Client(base_url=proxied.url, timeout=120) as client:
        r = client.post("/user/ann/digest", content=body)
        assert r.status_code == 200, r.text
        assert r.json()["bytes"] == len(body)
        assert r.json()["sha256"] == hashlib.sha256(body).hexdigest()

        def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer coding
            for i in range(0, BIG, 100_000):
                yield body[i : min(i + 100_000, BIG)]

        r = client.post("/user/ann/digest", content=chunks())
    assert r.json()["bytes"] == BIG
    assert r.json()["sha256"] == hashlib.sha256(body[:BIG]).hexdigest()


def test_an_upload_to_an_unanswering_server_gets_a_503_and_the_proxy_goes_on(
    proxied: Proxied,
) -> None:
    with httpx.Client(base_url=proxied.url, timeout=120) as client:
        try:
            r = client.post("/user/gone/api/contents/x", content=os.urandom(BIG))
            assert r.status_code == 503
        except httpx.WriteError:
            pass  # answered and closed before the whole body was sent: also a refusal
        assert client.get("/user/ann/api/status").status_code == 200
