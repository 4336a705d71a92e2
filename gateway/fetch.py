"""Fetches an image by URL without letting the URL reach inside our network.

A user-supplied URL is a request made from our servers, so each one is
checked before any connection:

* only ``http`` and ``https``;
* the host is resolved once, and every address it resolves to must be
  public (not loopback, private, link-local, multicast, reserved or
  unspecified, IPv4-mapped IPv6 included), unless it falls inside the
  ``FETCH_ALLOW_NETWORKS`` setting;
* the connection goes to the address that was checked (TLS still verifies
  the certificate against the host name), so a second DNS answer cannot
  switch it;
* redirects are followed by hand, at most ``FETCH_MAX_REDIRECTS``, each
  checked like the first URL;
* the connect time, the total time and the body size are limited, the size
  while streaming, so an endless body is cut at the limit; the total time
  is kept by a timer that shuts the socket down, so a server that trickles
  its headers or body byte by byte cannot outlive it either.

Errors name the URL's host and never our own addresses or internals.

Note:
    Resolving the host name is left to the system resolver and its own
    timeout (``/etc/resolv.conf``); the total time limit starts counting
    after it.
"""

import contextlib
import dataclasses
import ipaddress
import socket
import threading
import time
import urllib.parse

import certifi
import urllib3

from gateway.errors import (
    BadRequest,
    PayloadTooLarge,
    UpstreamError,
    UpstreamTimeout,
    UrlRefused,
)

USER_AGENT = "DeepClassify/1.0 (+image classification)"
CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# Characters left as they are when a URL's path and query are sent; any
# other (spaces, controls, non-ASCII) is percent-encoded.
_SAFE_TARGET_CHARACTERS = "/?&=%:@!$'()*+,;-._~[]"
# IPv6 prefixes that carry an IPv4 address in their last 32 bits; the
# embedded address must be public too.
_IPV4_EMBEDDING_NETWORKS = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # NAT64, local-use prefix
)


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """The limits one fetch runs under."""

    connect_timeout: float
    total_timeout: float
    max_bytes: int
    max_redirects: int
    allow_networks: tuple = ()

    @classmethod
    def from_config(cls, config):
        """Builds the policy from the gateway's settings."""
        networks = tuple(
            ipaddress.ip_network(item.strip(), strict=False)
            for item in config["FETCH_ALLOW_NETWORKS"].split(",")
            if item.strip()
        )
        return cls(
            connect_timeout=config["FETCH_CONNECT_TIMEOUT_SECONDS"],
            total_timeout=config["FETCH_TOTAL_TIMEOUT_SECONDS"],
            max_bytes=config["FETCH_MAX_BYTES"],
            max_redirects=config["FETCH_MAX_REDIRECTS"],
            allow_networks=networks,
        )


def is_public_address(address):
    """Tells whether an IP address is on the public internet.

    Args:
        address: an ``ipaddress`` address object.

    Returns:
        False for loopback, private, link-local, multicast, reserved,
        unspecified and shared addresses, and for IPv6 addresses that embed
        such an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64);
        True otherwise.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public_address(embedded)

    return address.is_global and not address.is_multicast


def _embedded_ipv4(address):
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address.sixtofour:
        return address.sixtofour
    if any(address in network for network in _IPV4_EMBEDDING_NETWORKS):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)

    return None


def _is_allowed(address, policy):
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped

    return any(address in network for network in policy.allow_networks)


def check_url(url, policy):
    """Parses a URL and resolves its host to one checked address.

    Args:
        url: the URL as the user gave it.
        policy: the ``FetchPolicy``.

    Returns:
        ``(parsed_url, address)``: the parsed URL and the IP address to
        connect to.

    Raises:
        UrlRefused: the URL is malformed, not http(s), does not resolve, or
            resolves to an address that is not allowed.
    """
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("the url is empty; send an http or https URL of an image")
    try:
        parsed = urllib.parse.urlsplit(url.strip())
    except ValueError as error:
        raise UrlRefused(f"the URL is malformed: {error}") from error
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused(
            f"only http and https URLs are fetched; received scheme "
            f"{parsed.scheme or '(none)'!r}"
        )
    try:
        host = parsed.hostname
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError as error:
        raise UrlRefused(f"the URL is malformed: {error}") from error
    if not host:
        raise UrlRefused("the URL has no host")
    if parsed.username or parsed.password:
        raise UrlRefused("URLs with a user name or password are not fetched")

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as error:
        raise UrlRefused(f"cannot resolve host {host}") from error

    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        if not _is_allowed(address, policy) and not is_public_address(address):
            raise UrlRefused(
                f"host {host} resolves to a non-public address; such URLs are "
                f"not fetched"
            )

    return parsed, addresses[0]


def fetch_image_bytes(url, policy):
    """Downloads the body of ``url`` under the policy's limits.

    Args:
        url: the URL as the user gave it.
        policy: the ``FetchPolicy``.

    Returns:
        The body's bytes.

    Raises:
        UrlRefused: see ``check_url``; also more than
            ``policy.max_redirects`` redirects.
        PayloadTooLarge: the body is larger than ``policy.max_bytes``.
        BadRequest: the body is empty.
        UpstreamError: the server could not be reached, answered an error
            status or a redirect without a target, or broke off.
        UpstreamTimeout: the total time limit ran out.
    """
    deadline = _Deadline(policy.total_timeout)
    current = url
    try:
        for _ in range(policy.max_redirects + 1):
            parsed, address = check_url(current, policy)
            with _open_pool(parsed, address, policy, deadline) as pool:
                response = _request(pool, parsed, policy, deadline)
                try:
                    if response.status in REDIRECT_STATUSES:
                        current = _redirect_target(response, parsed, current)
                        continue
                    if response.status >= 400:
                        raise UpstreamError(
                            f"{parsed.hostname} answered HTTP {response.status} "
                            f"for the image URL"
                        )
                    data = _read_limited(response, parsed.hostname, policy, deadline)
                    if not data:
                        raise BadRequest(
                            f"the URL at {parsed.hostname} answered with an empty "
                            f"body; it must point to an image"
                        )
                    return data
                finally:
                    response.close()
    finally:
        deadline.cancel()

    raise UrlRefused(
        f"the URL at {urllib.parse.urlsplit(url).hostname} redirects more than "
        f"{policy.max_redirects} times; at most {policy.max_redirects} redirects "
        f"are followed"
    )


class _Deadline:
    """The total time of one fetch, kept by shutting its sockets down.

    Socket timeouts bound each read, not their sum; a timer bounds the sum.
    """

    def __init__(self, seconds):
        self.seconds = seconds
        self.ends = time.monotonic() + seconds
        self.expired = False
        self._sockets = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self):
        return self.ends - time.monotonic()

    def watch(self, sock):
        """Shuts ``sock`` down when the time runs out (at once if it has)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def cancel(self):
        self._timer.cancel()

    def _expire(self):
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock):
    # The plain socket's shutdown, also for a TLS socket: it wakes up a
    # read blocked in another thread, which then sees the connection end.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(connection_class, deadline):
    class WatchedConnection(connection_class):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    return WatchedConnection


@contextlib.contextmanager
def _open_pool(parsed, address, policy, deadline):
    host = parsed.hostname
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    remaining = deadline.remaining()
    if remaining <= 0:
        raise UpstreamTimeout(
            f"{host} did not send the image within {policy.total_timeout:g} s"
        )
    timeout = urllib3.Timeout(
        connect=min(policy.connect_timeout, remaining), read=remaining
    )

    if parsed.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            str(address),
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            str(address), port, timeout=timeout, retries=False
        )
    pool.ConnectionCls = _watched(pool.ConnectionCls, deadline)
    try:
        yield pool
    finally:
        pool.close()


def _request(pool, parsed, policy, deadline):
    host = parsed.hostname
    target = urllib.parse.quote(parsed.path or "/", safe=_SAFE_TARGET_CHARACTERS)
    if parsed.query:
        target += "?" + urllib.parse.quote(parsed.query, safe=_SAFE_TARGET_CHARACTERS)
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if parsed.port is None else f"{bracketed}:{parsed.port}"
    try:
        return pool.urlopen(
            "GET",
            target,
            headers={
                "Host": host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
            },
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
    except urllib3.exceptions.NewConnectionError as error:
        # Listed first: urllib3 derives it from its TimeoutError, though a
        # refused connection is no timeout.
        raise UpstreamError(f"cannot connect to {host}") from error
    except urllib3.exceptions.TimeoutError as error:
        raise UpstreamTimeout(f"{host} did not answer in time") from error
    except urllib3.exceptions.SSLError as error:
        raise UpstreamError(f"TLS with {host} failed") from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        if deadline.expired:
            raise UpstreamTimeout(
                f"{host} did not send the image within {policy.total_timeout:g} s"
            ) from error
        raise UpstreamError(f"cannot connect to {host}") from error


def _redirect_target(response, parsed, current):
    location = response.headers.get("Location")
    if not location:
        raise UpstreamError(f"{parsed.hostname} answered a redirect without a Location")
    try:
        return urllib.parse.urljoin(current, location)
    except ValueError as error:
        raise UpstreamError(
            f"{parsed.hostname} answered a redirect to a malformed URL"
        ) from error


def _read_limited(response, host, policy, deadline):
    too_slow = f"{host} did not send the image within {policy.total_timeout:g} s"
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
        raise PayloadTooLarge(
            f"the image at {host} is {int(declared):,} bytes; at most "
            f"{policy.max_bytes:,} are accepted"
        )

    chunks = []
    received = 0
    try:
        while True:
            chunk = response.read1(CHUNK_BYTES)
            if deadline.expired:
                raise UpstreamTimeout(too_slow)
            if not chunk:
                break
            received += len(chunk)
            if received > policy.max_bytes:
                raise PayloadTooLarge(
                    f"the image at {host} is larger than {policy.max_bytes:,} bytes, "
                    f"the most accepted"
                )
            chunks.append(chunk)
    except urllib3.exceptions.TimeoutError as error:
        raise UpstreamTimeout(too_slow) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        if deadline.expired:
            raise UpstreamTimeout(too_slow) from error
        raise UpstreamError(f"the connection to {host} broke off") from error

    return b"".join(chunks)
