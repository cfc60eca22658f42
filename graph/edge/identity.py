"""Who is asking: the client's address (through trusted proxies only) and its own request id."""

import ipaddress
import re
from collections.abc import Sequence

from starlette.types import Scope

_SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")  # covers UUIDs
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddresses:
    """The client address of a request: the peer, or X-Forwarded-For behind trusted proxies."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(item, strict=False) for item in trusted
        )

    def of(self, scope: Scope) -> str | None:
        """The address to audit and rate-limit by."""
        client = scope.get("client")
        peer: str | None = str(client[0]) if client else None
        if not self.trusted or peer is None or not self._is_trusted(peer):
            return peer
        forwarded = header(scope, b"x-forwarded-for")
        hops = [hop.strip() for hop in forwarded.split(",")] if forwarded else []
        # Walk from the nearest hop outwards; the first address not of a trusted proxy is the
        # client (anything further left was written by the client itself and proves nothing).
        for hop in reversed(hops):
            if not _is_address(hop):
                return peer
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops and _is_address(hops[0]) else peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.trusted)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def header(scope: Scope, name: bytes) -> str | None:
    """One request header, decoded as latin-1 (None when absent)."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_request_id(scope: Scope) -> str | None:
    """The client's X-Request-ID when it is a UUID or 1..64 safe characters, else None."""
    value = header(scope, b"x-request-id")
    return value if value is not None and _SAFE_ID.fullmatch(value) else None
