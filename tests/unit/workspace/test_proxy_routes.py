"""The in-process proxy's pure parts (its route table, its path check, its headers), and
the address the hub records behind a proxy."""

from __future__ import annotations

import re

import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from controller.workspace.hub import client_address
from controller.workspace.proxy import Route, RouteTable, ambiguous_path, forwarded_headers


def _table() -> RouteTable:
    table = RouteTable()
    table.add(Route(routespec="/", target="http://127.0.0.1:1"))
    table.add(Route(routespec="/user/ann/", target="http://127.0.0.1:2"))
    table.add(Route(routespec="/user/ann/proxy/", target="http://127.0.0.1:3"))
    return table


@pytest.mark.parametrize(
    ("path", "port"),
    [
        ("/user/ann/lab", "2"),
        ("/user/ann/", "2"),
        ("/user/ann", "2"),  # the route's own prefix without its trailing slash
        ("/user/ann/proxy/x", "3"),  # the longest prefix wins
        ("/user/anna/lab", "1"),  # whole segments only: not ann's server
        ("/user/annex", "1"),
        ("/hub/home", "1"),
    ],
)
def test_a_path_goes_to_the_longest_route_it_lies_under_by_whole_segments(
    path: str, port: str
) -> None:
    route = _table().match(path)
    assert route is not None
    assert route.target.endswith(f":{port}")


def test_without_a_default_route_an_unrouted_path_matches_nothing() -> None:
    table = RouteTable()
    table.add(Route(routespec="/user/ann/", target="http://127.0.0.1:2"))
    assert table.match("/hub/home") is None
    assert table.remove("/user/ann/") is not None
    assert table.match("/user/ann/x") is None
    assert table.remove("/user/ann/") is None


@pytest.mark.parametrize(
    ("spec", "target", "message"),
    [
        ("/user/ann", "http://127.0.0.1:2", "starts and ends with '/'"),
        ("user/ann/", "http://127.0.0.1:2", "starts and ends with '/'"),
        ("/user/ann/", "file:///etc/passwd", re.escape("http(s) URL")),
        ("/user/ann/", "127.0.0.1:2", re.escape("http(s) URL")),
    ],
)
def test_a_malformed_route_is_refused_naming_what_is_wrong(
    spec: str, target: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RouteTable().add(Route(routespec=spec, target=target))


@pytest.mark.parametrize(
    "path",
    [
        "/user/ann/../bob/api",
        "/user/ann/..",
        "/user/ann/./x",
        "/user/ann/%2e%2e/bob/",
        "/user/ann/%2E%2e/bob/",
        "/user/ann/.%2e/bob/",
        "/..",
    ],
)
def test_a_dot_segment_raw_or_encoded_makes_a_path_ambiguous(path: str) -> None:
    assert ambiguous_path(path)


@pytest.mark.parametrize(
    "path", ["/user/ann/lab", "/user/ann/files/.ipynb_checkpoints/a", "/user/ann/a..b", "/"]
)
def test_dots_inside_a_segment_are_not_ambiguous(path: str) -> None:
    assert not ambiguous_path(path)


def test_a_client_cannot_choose_the_address_the_server_behind_believes() -> None:
    incoming = HTTPHeaders(
        {
            "Host": "localhost:8000",
            "X-Real-IP": "203.0.113.9",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Cookie": "a=1",
        }
    )
    out = forwarded_headers(incoming, peer="127.0.0.1", proto="http")
    assert out["X-Real-IP"] == "127.0.0.1"  # tornado believes X-Real-IP first
    assert out["X-Forwarded-For"].split(",")[-1].strip() == "127.0.0.1"  # and then the last
    assert out["X-Forwarded-Proto"] == "http"
    assert out["X-Forwarded-Host"] == "localhost:8000"
    assert out["Cookie"] == "a=1"
    assert out["Host"] == "localhost:8000"
    assert out.get_list("X-Real-IP") == ["127.0.0.1"]


def test_hop_by_hop_headers_and_those_connection_names_are_not_forwarded() -> None:
    incoming = HTTPHeaders()
    for name, value in [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("X-Secret-Hop", "from the client"),
        ("Proxy-Authorization", "Basic eA=="),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Accept", "text/html"),
    ]:
        incoming.add(name, value)
    out = forwarded_headers(incoming, peer="::1", proto="http")
    assert {k.lower() for k, _ in out.get_all()} == {
        "accept",
        "x-forwarded-for",
        "x-real-ip",
        "x-forwarded-proto",
    }


def _hub_request(headers: dict[str, str] | list[tuple[str, str]]) -> HTTPServerRequest:
    h = HTTPHeaders({"Host": "localhost:8000"})
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        h.add(name, value)
    return HTTPServerRequest(
        start_line=RequestStartLine("GET", "/hub/oauth_callback", "HTTP/1.1"), headers=h
    )


def test_the_hub_records_the_address_its_proxy_saw_not_one_the_client_named() -> None:
    # configurable-http-proxy passes the client's X-Real-IP through, and appends its peer
    request = _hub_request({"X-Real-IP": "203.0.113.9", "X-Forwarded-For": "127.0.0.1"})
    assert client_address(request) == "127.0.0.1"
    # a client's own X-Forwarded-For comes before the proxy's entry
    request = _hub_request(
        [("X-Forwarded-For", "203.0.113.9, 198.51.100.7"), ("X-Forwarded-For", "10.0.0.4")]
    )
    assert client_address(request) == "10.0.0.4"
