"""Which webhook URLs the platform may call (SSRF): https to public addresses only, unless the
host is allow-listed (WEBHOOK_ALLOW_HOSTS, meant for development).

A URL is checked twice: at submit, what can be decided without DNS (the scheme, an address
literal, names that are local by definition); at send time, every address its host resolves
to, and the sender connects to the address it checked (no second lookup a rebinding DNS
server could answer differently).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

# Cloud metadata services (AWS/GCP/Azure, Alibaba Cloud, AWS over IPv6): named for the
# reason they give, though none of them is a global address anyway.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "100.100.100.200", "fd00:ec2::254"))
LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal")

Resolver = Callable[[str, int], list[str]]


class UnsafeWebhook(ValueError):
    """The URL may not be called; the message says why."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class WebhookPolicy:
    def __init__(self, allow_hosts: Iterable[str] = (), resolver: Resolver = system_resolver
                 ) -> None:
        self.allow_hosts = {host.lower().strip("[]") for host in allow_hosts}
        self.resolver = resolver

    def allowed(self, host: str) -> bool:
        return host.lower() in self.allow_hosts

    def check_url(self, url: str) -> tuple[str, str, int]:
        """(scheme, host, port) of a URL fit to be a webhook, as far as it can be told
        without DNS; raises UnsafeWebhook."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UnsafeWebhook("is not a valid URL") from exc
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
        if scheme not in ("https", "http") or not host:
            raise UnsafeWebhook("must be an https URL")
        if parts.username or parts.password:
            raise UnsafeWebhook("must not carry credentials")
        if self.allowed(host):
            return scheme, host, port or (443 if scheme == "https" else 80)
        if scheme != "https":
            raise UnsafeWebhook("must be an https URL (http only for WEBHOOK_ALLOW_HOSTS)")
        if host == "localhost" or host.endswith(LOCAL_NAMES):
            raise UnsafeWebhook("names a local host")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return scheme, host, port or 443
        if problem := address_problem(address):
            raise UnsafeWebhook(f"is {problem}")
        return scheme, host, port or 443

    def resolve(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, host, port, address to connect to) at send time: every address the host
        resolves to must be public (unless the host is allow-listed); raises UnsafeWebhook."""
        scheme, host, port = self.check_url(url)
        try:
            addresses = self.resolver(host, port)
        except OSError as exc:
            raise UnsafeWebhook(f"host {host} does not resolve: {exc}") from exc
        if not addresses:
            raise UnsafeWebhook(f"host {host} does not resolve")
        if not self.allowed(host):
            for text in addresses:
                if problem := address_problem(ipaddress.ip_address(text.split("%")[0])):
                    raise UnsafeWebhook(f"host {host} resolves to {text}, {problem}")
        return scheme, host, port, addresses[0]


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why an address is no place to send a webhook, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for name in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{name}"):
            return f"a {name.replace('_', '-')} address"
    if not address.is_global:  # shared (CGNAT), documentation, benchmarking ranges...
        return "not a public address"
    return None
