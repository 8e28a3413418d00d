"""client_address: X-Forwarded-For is believed only as far as trusted proxies wrote it."""

from __future__ import annotations

import re

import pytest

from policies import client_address, parse_proxies

PROXIES = parse_proxies(["10.0.0.0/8", "2001:db8:ff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "proxies", "expected"),
    [
        ("198.51.100.9", ["192.0.2.1"], (), "198.51.100.9"),  # no trusted proxy: the peer
        ("198.51.100.9", ["192.0.2.1"], PROXIES, "198.51.100.9"),  # peer is no proxy
        ("10.1.2.3", ["203.0.113.66, 192.0.2.1"], PROXIES, "192.0.2.1"),  # nearest untrusted
        ("10.1.2.3", ["192.0.2.1, 10.9.9.9"], PROXIES, "192.0.2.1"),  # two proxies in a row
        ("10.1.2.3", [], PROXIES, "10.1.2.3"),  # a proxy without the header
        ("10.1.2.3", ["10.4.4.4"], PROXIES, "10.4.4.4"),  # only proxies: the farthest hop
        ("10.1.2.3", ["not-an-ip"], PROXIES, None),  # garbage where the client should be
        ("2001:db8:ff::1", ["2001:DB8::0001"], PROXIES, "2001:db8::1"),  # canonical form
        (None, ["192.0.2.1"], PROXIES, None),  # a Unix-socket peer: unknown
        ("testclient", [], (), None),
        # several lines are one list, in order: the last line is the nearest proxy's
        ("10.1.2.3", ["192.0.2.50", "203.0.113.66"], PROXIES, "203.0.113.66"),
        ("10.1.2.3", ["192.0.2.50", "203.0.113.66, 10.9.9.9"], PROXIES, "203.0.113.66"),
        ("10.1.2.3", ["203.0.113.66", "10.9.9.9", ""], PROXIES, "203.0.113.66"),
        ("10.1.2.3", ["not-an-ip", "203.0.113.66"], PROXIES, "203.0.113.66"),  # not reached
        ("10.1.2.3", ["192.0.2.50", "junk"], PROXIES, None),
    ],
)
def test_client_address(
    peer: str | None, forwarded_for: list[str], proxies: tuple[object, ...], expected: str | None
) -> None:
    got = client_address(peer=peer, forwarded_for=forwarded_for, trusted_proxies=proxies)  # type: ignore[arg-type]
    assert got == expected


def test_a_forged_first_line_is_not_the_client_when_a_proxy_appends_its_own() -> None:
    """The attack: the client sends ``X-Forwarded-For: <an allow-listed address>``; the
    trusted proxy appends a second line with the address it saw. Only the proxy's line
    is believed."""
    got = client_address(
        peer="10.0.0.5", forwarded_for=["192.0.2.50", "203.0.113.66"], trusted_proxies=PROXIES
    )
    assert got == "203.0.113.66"


def test_one_line_passed_as_a_string_is_refused() -> None:
    with pytest.raises(TypeError, match="list of header lines"):
        client_address(peer="10.0.0.5", forwarded_for="192.0.2.50", trusted_proxies=PROXIES)


def test_a_malformed_proxy_network_is_named() -> None:
    with pytest.raises(ValueError, match=re.escape("'10.0.0.0/33' is not a network")):
        parse_proxies(["10.0.0.0/8", "10.0.0.0/33"])
