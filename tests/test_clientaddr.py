"""The caller's address and scheme (clientaddr.py): forwarding headers count only from trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from tokenbridge.clientaddr import client_address, in_networks, over_https, request_host

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


def scope(peer: str | None, *, scheme: str = "http", **headers: str) -> dict[str, Any]:
    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return {"type": "http", "scheme": scheme, "client": (peer, 5000) if peer else None, "headers": raw}


def test_client_address_is_the_socket_peer_without_trusted_proxies() -> None:
    assert client_address(scope("203.0.113.9", x_forwarded_for="198.51.100.1"), ()) == "203.0.113.9"


def test_client_address_ignores_x_forwarded_for_from_an_untrusted_peer() -> None:
    assert client_address(scope("203.0.113.9", x_forwarded_for="10.1.1.1"), PROXIES) == "203.0.113.9"


def test_client_address_believes_x_forwarded_for_from_a_trusted_peer() -> None:
    assert client_address(scope("10.0.0.2", x_forwarded_for="198.51.100.1"), PROXIES) == "198.51.100.1"
    assert client_address(scope("::1", x_forwarded_for="198.51.100.1"), PROXIES) == "198.51.100.1"


def test_client_address_skips_trusted_hops_from_the_right_and_ignores_what_the_caller_wrote() -> None:
    # The caller wrote "1.2.3.4"; the outer proxy appended the caller's real address, then the inner one.
    forwarded = "1.2.3.4, 198.51.100.7, 10.0.0.3"
    assert client_address(scope("10.0.0.2", x_forwarded_for=forwarded), PROXIES) == "198.51.100.7"


def test_client_address_of_only_trusted_hops_is_the_first_and_garbage_is_none() -> None:
    assert client_address(scope("10.0.0.2", x_forwarded_for="10.0.0.9, 10.0.0.3"), PROXIES) == "10.0.0.9"
    assert client_address(scope("10.0.0.2", x_forwarded_for="not-an-address"), PROXIES) is None
    assert client_address(scope("10.0.0.2", x_forwarded_for=""), PROXIES) == "10.0.0.2"
    assert client_address(scope(None), PROXIES) is None


def test_over_https_directly_or_from_a_trusted_proxy_only() -> None:
    assert over_https(scope("203.0.113.9", scheme="https"), ())
    assert not over_https(scope("203.0.113.9", x_forwarded_proto="https"), PROXIES)
    assert over_https(scope("10.0.0.2", x_forwarded_proto="https"), PROXIES)
    assert over_https(scope("10.0.0.2", x_forwarded_proto="http, HTTPS"), PROXIES)  # the proxy's own: last
    assert not over_https(scope("10.0.0.2", x_forwarded_proto="https, http"), PROXIES)
    assert not over_https(scope("10.0.0.2", x_forwarded_proto="https"), ())


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("10.255.0.1", True),
        ("11.0.0.1", False),
        ("::ffff:10.0.0.1", True),
        ("::1", True),
        ("bogus", False),
        (None, False),
    ],
)
def test_in_networks_matches_cidrs_and_ipv4_mapped_addresses(address: str | None, inside: bool) -> None:
    assert in_networks(address, PROXIES) is inside


def test_request_host_is_the_host_header_or_a_trusted_proxys_forwarded_host() -> None:
    assert request_host(scope("203.0.113.9", host="gw.example:8080", x_forwarded_host="evil.example"), PROXIES) == (
        "gw.example:8080"
    )
    assert (
        request_host(scope("10.0.0.2", host="127.0.0.1:8080", x_forwarded_host="gw.example"), PROXIES) == "gw.example"
    )
    assert request_host(scope("10.0.0.2", host="127.0.0.1:8080"), PROXIES) == "127.0.0.1:8080"
    assert request_host(scope("10.0.0.2"), ()) == ""
