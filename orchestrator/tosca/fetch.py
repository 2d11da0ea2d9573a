"""The opt-in fetcher of remote imports: https only, public addresses only, bounded in
size and time, cached by URL with the sha256 of the bytes.

Every hop (the first URL and each redirect) is checked before any byte is sent: the
scheme must be https, the host must be allowed (when a list of hosts is given, as the
service does with ``ORCHESTRATOR_IMPORT_HOSTS``), and every address the name resolves
to must be public (not loopback, private, link-local, multicast, reserved or
unspecified). The connection then goes to an address that was checked, with the name
as TLS SNI, certificate name and Host header, so the name cannot be resolved again to
somewhere else between the check and the connection.

A fetched file is stored under ``$XDG_CACHE_HOME/orchestrator/imports/`` (the bytes
and their sha256); later loads use the cached bytes without any network access unless
``refresh`` is set (``--refresh-imports``).

Test-only: ``ORCHESTRATOR_TEST_ALLOW_LOOPBACK_FETCH=1`` lets the fetcher reach
loopback addresses (the tests' own https server on 127.0.0.1) and
``ORCHESTRATOR_TEST_IMPORT_CA`` names a CA file to trust besides the system's. Never
set either outside a test.
"""
from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import socket
import ssl
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from orchestrator import resources
from orchestrator.tosca.yamlsource import MAX_FILE_BYTES

TEST_LOOPBACK_ENV = "ORCHESTRATOR_TEST_ALLOW_LOOPBACK_FETCH"
TEST_CA_ENV = "ORCHESTRATOR_TEST_IMPORT_CA"
DEFAULT_MAX_BYTES = min(MAX_FILE_BYTES, 5 * 1024 * 1024)
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """Why a remote import was not fetched (the message is shown to the user)."""


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


@dataclass(frozen=True)
class FetchSettings:
    """Limits and policy of the fetcher. ``allowed_hosts`` None: any public host; a tuple:
    only those (exact names or ``*.suffix``), and still only at public addresses."""

    max_bytes: int = 0  # 0: ORCHESTRATOR_IMPORT_MAX_BYTES or DEFAULT_MAX_BYTES
    connect_timeout_s: float = 0.0  # 0: ORCHESTRATOR_IMPORT_CONNECT_TIMEOUT_S or 10
    total_timeout_s: float = 0.0  # 0: ORCHESTRATOR_IMPORT_TIMEOUT_S or 30
    max_redirects: int = 3
    cache_dir: str | None = None  # None: resources.cache_dir() / "imports"
    allowed_hosts: tuple[str, ...] | None = None
    refresh: bool = False
    ca_file: str | None = None  # extra CA bundle to trust (tests)

    def resolved(self) -> "FetchSettings":
        """These settings with every default filled in from the environment."""
        return FetchSettings(
            max_bytes=self.max_bytes or int(_env_float("ORCHESTRATOR_IMPORT_MAX_BYTES",
                                                       DEFAULT_MAX_BYTES)),
            connect_timeout_s=self.connect_timeout_s or _env_float(
                "ORCHESTRATOR_IMPORT_CONNECT_TIMEOUT_S", 10.0),
            total_timeout_s=self.total_timeout_s or _env_float(
                "ORCHESTRATOR_IMPORT_TIMEOUT_S", 30.0),
            max_redirects=self.max_redirects,
            cache_dir=self.cache_dir or str(resources.cache_dir() / "imports"),
            allowed_hosts=self.allowed_hosts, refresh=self.refresh,
            ca_file=self.ca_file or os.environ.get(TEST_CA_ENV) or None)


@dataclass(frozen=True)
class Fetched:
    url: str
    data: bytes
    sha256: str
    from_cache: bool


def address_refusal(address: str, allow_loopback: bool = False) -> str | None:
    """Why ``address`` may not be connected to; None for a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    for what, flag in (("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                       ("link-local", ip.is_link_local), ("private", ip.is_private),
                       ("reserved", ip.is_reserved)):
        if flag:
            return f"{ip} is a {what} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def host_allowed(host: str, allowed: tuple[str, ...] | None) -> bool:
    if allowed is None:
        return True
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address`` (already checked), with ``host`` as SNI, certificate name and
    Host header: the name is never resolved again."""

    def __init__(self, host: str, address: str, port: int, context: ssl.SSLContext,
                 timeout: float):
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address
        self._ssl_context = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ssl_context.wrap_socket(sock, server_hostname=self.host)


class Fetcher:
    def __init__(self, settings: FetchSettings | None = None, resolve=socket.getaddrinfo):
        self.settings = (settings or FetchSettings()).resolved()
        self._resolve = resolve
        self._context: ssl.SSLContext | None = None

    # -- the cache ------------------------------------------------------------------------
    def _cache_paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()
        folder = Path(self.settings.cache_dir)
        return folder / f"{key}.body", folder / f"{key}.json"

    def cached(self, url: str) -> Fetched | None:
        body, meta = self._cache_paths(url)
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            data = body.read_bytes()
        except (OSError, ValueError):
            return None
        sha = hashlib.sha256(data).hexdigest()
        if not isinstance(info, dict) or info.get("url") != url or info.get("sha256") != sha:
            return None  # damaged or foreign: fetch again
        return Fetched(url, data, sha, True)

    def _store(self, fetched: Fetched) -> None:
        body, meta = self._cache_paths(fetched.url)
        try:
            body.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            for path, content in ((body, fetched.data), (meta, json.dumps(
                    {"url": fetched.url, "sha256": fetched.sha256, "size": len(fetched.data),
                     "fetched_at": int(time.time())}).encode("utf-8"))):
                handle, tmp = tempfile.mkstemp(dir=body.parent, prefix=".tmp-")
                with os.fdopen(handle, "wb") as out:
                    out.write(content)
                os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a fetch next time

    # -- fetching -------------------------------------------------------------------------
    def get(self, url: str) -> Fetched:
        """The bytes of ``url``, from the cache unless refreshing; FetchError otherwise."""
        self.check_url(url)
        if not self.settings.refresh:
            hit = self.cached(url)
            if hit is not None:
                return hit
        data = self._download(url)
        fetched = Fetched(url, data, hashlib.sha256(data).hexdigest(), False)
        self._store(fetched)
        return fetched

    def check_url(self, url: str) -> tuple[str, int, str]:
        """(host, port, path and query) of an https URL the policy allows."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or 443
        except ValueError as exc:
            raise FetchError(f"not a valid URL ({exc})") from None
        if parts.scheme != "https":
            raise FetchError(f"only https:// imports are fetched, not {parts.scheme}://")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise FetchError("the URL names no host")
        if parts.username or parts.password:
            raise FetchError("a URL with credentials is not fetched")
        if not host_allowed(host, self.settings.allowed_hosts):
            raise FetchError(f"host {host!r} is not one of the allowed import hosts")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return host, port, target

    def _addresses(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; FetchError when any is not public."""
        loopback = os.environ.get(TEST_LOOPBACK_ENV) == "1"
        try:
            found = [info[4][0] for info in self._resolve(host, port, type=socket.SOCK_STREAM)]
        except (OSError, UnicodeError) as exc:
            raise FetchError(f"host {host!r} does not resolve ({exc})") from None
        if not found:
            raise FetchError(f"host {host!r} has no address")
        for address in found:
            why = address_refusal(address, allow_loopback=loopback)
            if why:
                raise FetchError(f"host {host!r} resolves to a non-public address: {why}")
        return list(dict.fromkeys(found))

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context()
            if self.settings.ca_file:
                context.load_verify_locations(cafile=self.settings.ca_file)
            self._context = context
        return self._context

    def _download(self, url: str) -> bytes:
        deadline = time.monotonic() + self.settings.total_timeout_s
        for _hop in range(self.settings.max_redirects + 1):
            host, port, target = self.check_url(url)
            addresses = self._addresses(host, port)
            status, location, data = self._request(host, port, target, addresses, deadline)
            if status in REDIRECTS:
                if not location:
                    raise FetchError(f"HTTP {status} without a Location")
                url = urllib.parse.urljoin(url, location)
                continue
            if status != 200:
                raise FetchError(f"HTTP {status}")
            return data
        raise FetchError(f"more than {self.settings.max_redirects} redirects")

    def _remaining(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchError(f"timed out after {self.settings.total_timeout_s:g} s")
        return left

    def _request(self, host: str, port: int, target: str, addresses: list[str],
                 deadline: float) -> tuple[int, str | None, bytes]:
        last: Exception | None = None
        for address in addresses:
            timeout = min(self.settings.connect_timeout_s, self._remaining(deadline))
            conn = _PinnedHTTPSConnection(host, address, port, self._ssl_context(), timeout)
            try:
                try:
                    conn.connect()
                except (OSError, ssl.SSLError) as exc:
                    if isinstance(exc, ssl.SSLError):
                        raise
                    last = exc
                    continue
                sock = conn.sock  # kept: the connection lets go of it once a reply says close
                sock.settimeout(self._remaining(deadline))
                conn.request("GET", target, headers={"Accept": "application/yaml, text/*",
                                                     "User-Agent": "orchestrator-imports"})
                response = conn.getresponse()
                if response.status in REDIRECTS:
                    return response.status, response.getheader("Location"), b""
                if response.status != 200:
                    return response.status, None, b""
                return 200, None, self._read(sock, response, deadline)
            except socket.timeout:
                raise FetchError(f"timed out after {self.settings.total_timeout_s:g} s "
                                 "(or the connection stalled)") from None
            except ssl.SSLError as exc:
                raise FetchError(f"TLS failed: {exc.reason or exc}") from None
            except (OSError, http.client.HTTPException) as exc:
                raise FetchError(f"{type(exc).__name__}: {exc}") from None
            finally:
                conn.close()
        raise FetchError(f"cannot connect to {host}:{port} ({last})")

    def _read(self, sock, response, deadline: float) -> bytes:
        limit = self.settings.max_bytes
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise FetchError(f"the file is {int(length)} bytes; the limit is {limit}")
        chunks, size = [], 0
        while True:
            sock.settimeout(self._remaining(deadline))
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise FetchError(f"the file is larger than the limit of {limit} bytes")
            chunks.append(chunk)
