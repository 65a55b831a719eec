"""The caller's address, scheme and host, as the socket says, or as a trusted proxy forwarded them.

`X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host` are anyone's to write, so they are believed only when
the socket's peer is in `[accounts] trusted_proxies` (CIDRs): a caller that talks to the gateway
directly cannot claim another address (an `allow_ips` key) or https (a `Secure` cookie). uvicorn's
own proxy-header rewriting is turned off for the same reason (wire.py, `proxy_headers=False`): it
trusts loopback by default, whoever runs there.

X-Forwarded-For is read right to left, as uvicorn's ProxyHeadersMiddleware does: each proxy
appends the address it saw, so the first entry from the right that is not a trusted proxy is the
caller; entries further left were written by that caller and mean nothing.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from tokenbridge.accountsettings import Network
from tokenbridge.asgi import Scope

__all__ = ["client_address", "in_networks", "networks", "over_https", "request_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def in_networks(address: str | None, networks: Iterable[Network]) -> bool:
    """Whether `address` (text, as in a scope) lies in any of `networks`; an unknown address: never.
    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a dual-stack socket reports) counts as its IPv4."""
    parsed = parse_address(address) if address else None
    if parsed is None:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


@functools.lru_cache(maxsize=4096)
def networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """A key's `allow_ips` (checked CIDR strings) parsed once, not per request."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _peer(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _header(scope: Scope, name: bytes) -> str | None:
    value: bytes
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str | None:
    """The caller's IP address as text (None when the server does not know it)."""
    peer = _peer(scope)
    forwarded = _header(scope, b"x-forwarded-for") if trusted and in_networks(peer, trusted) else None
    if not forwarded:
        return peer
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            return hop if parse_address(hop) is not None else None  # garbage from a proxy: no address
    return hops[0] if hops else peer  # every hop a trusted proxy: the first one is the caller


def over_https(scope: Scope, trusted: tuple[Network, ...]) -> bool:
    """Whether the request came over https: directly, or as the trusted proxy in front says (the
    value it wrote is the last of the list)."""
    if scope.get("scheme") in ("https", "wss"):
        return True
    forwarded = _header(scope, b"x-forwarded-proto") if trusted and in_networks(_peer(scope), trusted) else None
    return forwarded is not None and forwarded.split(",")[-1].strip().lower() == "https"


def request_host(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """The host (and port) the caller asked for: `Host`, or a trusted proxy's `X-Forwarded-Host` (a
    proxy that rewrites Host says there what the browser's page was served from)."""
    forwarded = _header(scope, b"x-forwarded-host") if trusted and in_networks(_peer(scope), trusted) else None
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return _header(scope, b"host") or ""
