"""One strict parse of the http(s) URLs samiam fetches, shared by the check and the connection.

A URL from a task (or a redirect) is accepted only when it has one obvious reading, and is then
rebuilt from the parts that were checked: the fetcher connects to :attr:`HttpUrl.host` and
:attr:`HttpUrl.port` and sends :attr:`HttpUrl.target`, never the original string.

Accepted: ``http`` or ``https`` (any case), ``//``, a host that is a lower-case DNS name
(letters, digits, ``-``, ``_``; any case is folded), a dotted-quad IPv4 address without leading
zeros, or a bracketed IPv6 address in its compressed form; an optional port ``1``-``65535``
without leading zeros; a path starting with ``/`` and a query. The fragment is dropped.

Refused (the reason says which, without repeating the URL): any character outside printable
ASCII (whitespace, control characters, Unicode dots, fullwidth or other non-ASCII letters: no
IDNA), backslashes, user info (``@`` in the host part), percent-encoded hosts, empty labels and
trailing dots, other IPv4 spellings (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``),
IPv6 zone ids, IPv4-mapped IPv6 addresses and non-compressed IPv6 spellings, empty or
zero-padded ports.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from samiam.errors import ImageFetchError

DEFAULT_PORTS = {"http": 80, "https": 443}

_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)"
                  r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?(?:#.*)?", re.DOTALL)
_AUTHORITY = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>[^:]*))?", re.DOTALL)
_PORT = re.compile(r"[1-9][0-9]{0,4}")
_DNS_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV4_OCTET = re.compile(r"0|[1-9][0-9]{0,2}")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
"""A last label like these makes a host an IPv4 address to URL parsers (WHATWG "ends in a number")."""


@dataclass(frozen=True)
class HttpUrl:
    """An http(s) URL that passed :func:`parse_http_url`, in canonical parts."""

    scheme: str
    """``"http"`` or ``"https"``."""
    host: str
    """Lower-case DNS name, dotted-quad IPv4, or ``[compressed IPv6]``."""
    port: int
    """Always explicit (the scheme's default when the URL had none)."""
    target: str
    """Path (starting with ``/``) and ``?query`` as sent in the request line."""

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def socket_host(self) -> str:
        """The host as sockets and TLS take it (IPv6 without brackets)."""
        return self.host.strip("[]")

    def with_target(self, target: str) -> HttpUrl:
        """The same origin with another path and query; ``target`` is checked like a URL's."""
        return parse_http_url(f"{self.scheme}://{self.host}:{self.port}{target}")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.target}"


def check_characters(text: str) -> None:
    """Refuse ``text`` unless every character is printable ASCII other than a backslash."""
    for char in text:
        if char == "\\":
            raise ImageFetchError("it contains a backslash")
        if not "!" <= char <= "~":
            kind = "a non-ASCII character" if ord(char) > 0x7F else "whitespace or a control character"
            raise ImageFetchError(f"it contains {kind}")


def parse_http_url(text: str) -> HttpUrl:
    """``text`` as canonical parts, or :class:`ImageFetchError` with the reason (see the module doc)."""
    check_characters(text)
    match = _URL.fullmatch(text)
    if match is None:
        raise ImageFetchError("it is not an absolute URL of the form scheme://host/path")
    scheme = match["scheme"].lower()
    if scheme not in DEFAULT_PORTS:
        raise ImageFetchError(f"scheme {scheme!r} is not http or https")
    host, port = parse_authority(match["authority"])
    path = match["path"] or "/"
    query = match["query"]
    return HttpUrl(scheme, host, port or DEFAULT_PORTS[scheme], path if query is None else f"{path}?{query}")


def parse_authority(text: str) -> tuple[str, int | None]:
    """``host[:port]`` as (canonical host, port or None when absent)."""
    check_characters(text)
    if "@" in text:
        raise ImageFetchError("it has user info ('@' before the host)")
    match = _AUTHORITY.fullmatch(text)
    if match is None:
        raise ImageFetchError("its host part is not host[:port] (an IPv6 address needs brackets)")
    port = match["port"]
    if port is not None and not (_PORT.fullmatch(port) and int(port) <= 65535):
        raise ImageFetchError("its port is not a number from 1 to 65535 without leading zeros")
    return canonical_host(match["host"]), None if port is None else int(port)


def canonical_host(text: str) -> str:
    """The canonical spelling of ``text`` (lower case), or :class:`ImageFetchError` when ``text``
    is not a host or has another spelling a URL parser could read differently."""
    if text.startswith("["):
        return _canonical_ipv6(text[1:-1])
    host = text.lower()
    labels = host.split(".")
    if not host:
        raise ImageFetchError("it has no host")
    if "" in labels:
        raise ImageFetchError("its host has an empty label or a trailing dot")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        if len(labels) != 4 or not all(_IPV4_OCTET.fullmatch(label) and int(label) <= 255 for label in labels):
            raise ImageFetchError("its host is an IPv4 address not written as four decimal numbers "
                                  "0-255 without leading zeros")
        return host
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ImageFetchError("its host is not a DNS name of letters, digits, '-' and '_' "
                              "(percent-encoded and international names are refused)")
    return host


def _canonical_ipv6(text: str) -> str:
    if "%" in text:
        raise ImageFetchError("its IPv6 host has a zone id")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ImageFetchError("its host is not a valid IPv6 address") from None
    if address.ipv4_mapped is not None or "." in text:
        raise ImageFetchError("its host is an IPv4 address written as IPv6")
    if text.lower() != address.compressed:
        raise ImageFetchError("its IPv6 host is not in compressed form")
    return f"[{address.compressed}]"
