"""client_address: X-Forwarded-For is believed only as far as trusted proxies wrote it."""

from __future__ import annotations

import re

import pytest

from policies import client_address, parse_proxies

PROXIES = parse_proxies(["10.0.0.0/8", "2001:db8:ff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "expected"),
    [
        ("198.51.100.9", "192.0.2.1", (), "198.51.100.9"),  # no trusted proxy: the peer
        ("198.51.100.9", "192.0.2.1", PROXIES, "198.51.100.9"),  # peer is no proxy
        ("10.1.2.3", "203.0.113.66, 192.0.2.1", PROXIES, "192.0.2.1"),  # nearest untrusted
        ("10.1.2.3", "192.0.2.1, 10.9.9.9", PROXIES, "192.0.2.1"),  # two proxies in a row
        ("10.1.2.3", None, PROXIES, "10.1.2.3"),  # a proxy without the header
        ("10.1.2.3", "10.4.4.4", PROXIES, "10.4.4.4"),  # only proxies: the farthest hop
        ("10.1.2.3", "not-an-ip", PROXIES, None),  # garbage where the client should be
        ("2001:db8:ff::1", "2001:DB8::0001", PROXIES, "2001:db8::1"),  # canonical form
        (None, "192.0.2.1", PROXIES, None),  # a Unix-socket peer: unknown
        ("testclient", None, (), None),
    ],
)
def test_client_address(
    peer: str | None, forwarded_for: str | None, proxies: tuple[object, ...], expected: str | None
) -> None:
    got = client_address(peer=peer, forwarded_for=forwarded_for, trusted_proxies=proxies)  # type: ignore[arg-type]
    assert got == expected


def test_a_malformed_proxy_network_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33' is not a network")):
        parse_proxies(["10.0.0.0/8", "10.0.0.0/33"])
