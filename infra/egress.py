"""Where this server may connect on an operator's or a customer's word (a cost source's custom
endpoint, a webhook endpoint): the one check of the addresses a host name resolves to.

A loopback, private, link-local (the clouds' metadata service, 169.254.169.254, among them),
multicast or otherwise non-public address is refused unless the caller's setting allows it; a
name that does not resolve is refused too. Callers that connect themselves connect to an
address this check returned, so that a name cannot answer one address to the check and
another to the connection (DNS rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from enum import Enum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refusal(str, Enum):
    UNRESOLVED = "UNRESOLVED"
    PRIVATE = "PRIVATE"


class EgressRefused(Exception):
    """The host may not be reached: `refusal` says why (no library text in it)."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.value)
        self.refusal = refusal


def is_public(address: IPAddress) -> bool:
    """Whether the address is a public unicast one (an IPv4 address mapped into IPv6 is judged
    as the IPv4 address it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def resolve(host: str, *, allow_private: bool, timeout: float, port: int | None = None) -> list[IPAddress]:
    """The addresses `host` (a name or a literal address) resolves to now, each checked;
    raises EgressRefused when it does not resolve or any of them is not public (unless
    `allow_private`)."""
    try:
        # A literal address is its own answer: no resolver's thread to ask.
        addresses: list[IPAddress] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await _lookup(host, port, timeout)
    if not addresses:
        raise EgressRefused(Refusal.UNRESOLVED)
    if not allow_private and not all(is_public(address) for address in addresses):
        raise EgressRefused(Refusal.PRIVATE)
    return addresses


async def _lookup(host: str, port: int | None, timeout: float) -> list[IPAddress]:
    try:
        async with asyncio.timeout(timeout):
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        raise EgressRefused(Refusal.UNRESOLVED) from None
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
