"""Which callback URLs the service POSTs to.

A callback is a request the server makes on a user's behalf, so it must not reach what
the user could not: the server's own loopback, a cloud's metadata service
(169.254.169.254), the private network the service runs in. Without a list of allowed
hosts (``ORCHESTRATOR_CALLBACK_HOSTS``), a callback URL must name a host whose every
address is public. With one, only the listed hosts are called: exact names, ``*.suffix``
patterns, IP addresses or networks (``10.0.0.0/8``, matched against an address written in
the URL). The URL is checked when it is submitted and again before each POST (a name may
resolve elsewhere by then)."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def refusal(url: str, allowed: tuple[str, ...] = (), resolve=socket.getaddrinfo
            ) -> str | None:
    """Why the service may not POST to ``url``; None when it may."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host"
    host = parts.hostname.lower().rstrip(".")
    if allowed:
        return None if any(_matches(host, entry) for entry in allowed) else \
            f"host {host!r} is not one of the allowed callback hosts"
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        found = {info[4][0] for info in resolve(host, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError) as exc:
        return f"host {host!r} does not resolve ({exc})"
    for address in sorted(found):
        if not ipaddress.ip_address(address.split("%", 1)[0]).is_global:
            return (f"host {host!r} has the non-public address {address} (allow it with "
                    "ORCHESTRATOR_CALLBACK_HOSTS)")
    return None if found else f"host {host!r} has no address"


def _matches(host: str, entry: str) -> bool:
    entry = entry.lower().rstrip(".")
    if entry.startswith("*."):
        return host.endswith(entry[1:])
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return host == entry
    try:
        return ipaddress.ip_address(host) in network  # urlsplit drops an IPv6's brackets
    except ValueError:
        return False
