"""Where a delivery may go: public addresses only, checked after DNS resolution (no SSRF).

A webhook URL is typed by a customer, so without this check a worker inside the VPC would POST
wherever it is told: the cloud metadata service (169.254.169.254), Redis on localhost, an admin
panel on 10.0.0.5. The host is resolved here, every address it resolves to is checked, and the
caller connects to the checked address itself (keeping the host name for the Host header and
TLS), so a DNS answer that changes between the check and the connection (a rebind) cannot
slip through. Networks listed in ``SAAS_TASKS_WEBHOOK_ALLOWED_NETWORKS`` are let through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from saas_tasks.webhooks.errors import AddressRefused, InvalidEndpoint

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata services; link-local or private already, named for a clearer refusal.
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address``, speak to ``host``."""

    scheme: str
    host: str
    port: int
    address: str


def check_url(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of a usable webhook URL, or :class:`InvalidEndpoint`."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise InvalidEndpoint(f"url: {url!r} must start with https:// (or http://)")
    if not parts.hostname:
        raise InvalidEndpoint(f"url: {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidEndpoint(
            "url: credentials in the URL are refused; the signature authenticates"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidEndpoint(f"url: {url!r} has an invalid port") from None
    return parts.scheme, parts.hostname, port


def refusal(address: IPAddress, allowed: Sequence[Network]) -> str | None:
    """Why ``address`` may not be reached, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return None
    if address in METADATA:
        return "a cloud metadata address"
    for kind in ("loopback", "unspecified", "link_local", "private", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


def resolve(url: str, allowed: Sequence[Network]) -> Target:
    """Resolve the URL's host and return the first address, once every address has passed.

    Every address is checked, not only the first: a host that resolves to one public and one
    private address is refused, since which one a client picks is not ours to decide.
    """
    scheme, host, port = check_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        why = refusal(address, allowed)
        if why is not None:
            raise AddressRefused(
                f"{host} resolves to {address}, {why}; webhooks go to public addresses only "
                "(SAAS_TASKS_WEBHOOK_ALLOWED_NETWORKS lets chosen networks through)"
            )
    return Target(scheme=scheme, host=host, port=port, address=str(addresses[0]))
