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
  while streaming, so an endless body is cut at the limit.

Errors name the URL's host and never our own addresses or internals.
"""

import dataclasses
import ipaddress
import socket
import time
import urllib.parse

import certifi
import urllib3

from gateway.errors import PayloadTooLarge, UpstreamError, UpstreamTimeout, UrlRefused

USER_AGENT = "DeepClassify/1.0 (+image classification)"
CHUNK_BYTES = 64 * 1024
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


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
        unspecified and shared addresses, looking through IPv4-mapped and
        6to4/Teredo-free forms; True otherwise.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped

    return address.is_global and not address.is_multicast


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
    parsed = urllib.parse.urlsplit(url.strip())
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
    except (socket.gaierror, UnicodeError) as error:
        raise UrlRefused(f"cannot resolve host {host}") from error

    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for address in addresses:
        allowed = any(address in network for network in policy.allow_networks)
        if not allowed and not is_public_address(address):
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
        UrlRefused: see ``check_url``; also a redirect without a target.
        PayloadTooLarge: the body is larger than ``policy.max_bytes``.
        UpstreamError: the server could not be reached or answered an
            error status, or there were too many redirects.
        UpstreamTimeout: the total time limit ran out.
    """
    deadline = time.monotonic() + policy.total_timeout
    current = url

    for _ in range(policy.max_redirects + 1):
        parsed, address = check_url(current, policy)
        response = _request(parsed, address, policy, deadline)
        try:
            if response.status in REDIRECT_STATUSES:
                location = response.headers.get("Location")
                if not location:
                    raise UpstreamError(
                        f"{parsed.hostname} answered a redirect without a Location"
                    )
                current = urllib.parse.urljoin(current, location)
                continue
            if response.status >= 400:
                raise UpstreamError(
                    f"{parsed.hostname} answered HTTP {response.status} "
                    f"for the image URL"
                )
            return _read_limited(response, parsed.hostname, policy, deadline)
        finally:
            response.release_conn()
            response.close()

    raise UpstreamError(
        f"more than {policy.max_redirects} redirects starting at "
        f"{urllib.parse.urlsplit(url).hostname}"
    )


def _request(parsed, address, policy, deadline):
    host = parsed.hostname
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    remaining = deadline - time.monotonic()
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

    target = parsed.path or "/"
    if parsed.query:
        target += "?" + parsed.query
    host_header = host if parsed.port is None else f"{host}:{parsed.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if parsed.port is None else f"[{host}]:{parsed.port}"
    try:
        return pool.urlopen(
            "GET",
            target,
            headers={
                "Host": host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
            },
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
    except urllib3.exceptions.TimeoutError as error:
        raise UpstreamTimeout(f"{host} did not answer in time") from error
    except urllib3.exceptions.SSLError as error:
        raise UpstreamError(f"TLS with {host} failed") from error
    except urllib3.exceptions.HTTPError as error:
        raise UpstreamError(f"cannot connect to {host}") from error


def _read_limited(response, host, policy, deadline):
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
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(
                    f"{host} did not send the image within {policy.total_timeout:g} s"
                )
            _set_read_timeout(response, remaining)
            chunk = response.read1(CHUNK_BYTES)
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
        raise UpstreamTimeout(
            f"{host} did not send the image within {policy.total_timeout:g} s"
        ) from error
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise UpstreamError(f"the connection to {host} broke off") from error

    return b"".join(chunks)


def _set_read_timeout(response, seconds):
    # The socket's timeout bounds each read; lowering it to the time left
    # keeps a sender that trickles bytes from outliving the total limit.
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))
