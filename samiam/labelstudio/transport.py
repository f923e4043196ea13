"""HTTP exchanges bounded by one deadline, to exactly the host and port that were checked.

:func:`exchange` connects to :attr:`HttpUrl.host` and :attr:`HttpUrl.port` (no proxy, no
``.netrc``, no environment settings: nothing can route the request elsewhere) and sends
:attr:`HttpUrl.target`. Everything it does — name resolution, connect, TLS, the request, the
headers and the caller's reading of the body — ends by :class:`Deadline`: a watchdog shuts the
socket down when the deadline passes, so a server that trickles bytes, even mid-headers, cannot
hold the caller longer. Failures are :class:`ImageFetchError` whose reason repeats nothing the
server sent.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import certifi

from samiam.errors import ImageFetchError
from samiam.labelstudio.urls import HttpUrl

CHUNK_BYTES = 2**16


class Deadline:
    """The end of a time budget of ``timeout_s`` seconds started now."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.end = time.monotonic() + timeout_s

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def remaining(self) -> float:
        """Seconds left (> 0), or :class:`ImageFetchError` once the deadline has passed."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise self.exceeded()
        return left

    def exceeded(self) -> ImageFetchError:
        return ImageFetchError(f"it took longer than {self.timeout_s:g} s")


class _Watchdog:
    """Shuts down the socket it watches when the deadline passes, unless :meth:`stop` came first."""

    def __init__(self, deadline: Deadline):
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._fired = self._stopped = False
        self._timer = threading.Timer(max(deadline.end - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        """Watch ``sock`` from now on (shut down at once if the deadline has already passed)."""
        with self._lock:
            self._sock = sock
            if self._fired:
                self._shut_down()

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            if not self._stopped:
                self._shut_down()

    def _shut_down(self) -> None:
        if self._sock is None:
            return
        try:  # the plain socket's shutdown: also for a TLS socket, without touching its TLS state
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._timer.cancel()


@contextmanager
def exchange(method: str, url: HttpUrl, headers: dict[str, str], deadline: Deadline,
             body: bytes | None = None) -> Iterator[http.client.HTTPResponse]:
    """Send one request to ``url`` and yield the response (headers read, body unread).

    The connection is closed when the block ends; reading the body inside the block stays
    bounded by ``deadline``. Redirects are not followed.
    """
    watchdog = _Watchdog(deadline)
    sock = connection = None
    try:
        sock = _connect(url, deadline)
        watchdog.watch(sock)
        if url.scheme == "https":
            sock = _tls_context().wrap_socket(sock, server_hostname=url.socket_host,
                                              do_handshake_on_connect=False)
            watchdog.watch(sock)
            sock.do_handshake()
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        connection = kind(url.socket_host, url.port)
        connection.sock = sock  # connected above: http.client must not resolve or connect again
        connection.request(method, url.target, body=body, headers=headers)
        with connection.getresponse() as response:
            yield response
    except ssl.SSLCertVerificationError:
        raise ImageFetchError(f"the TLS certificate of {url.host}:{url.port} is not trusted") from None
    except (OSError, http.client.HTTPException):
        if deadline.passed:
            raise deadline.exceeded() from None
        raise ImageFetchError(f"the connection to {url.host}:{url.port} failed") from None
    finally:
        watchdog.stop()
        if connection is not None:
            connection.close()
        elif sock is not None:  # TLS failed: no connection owns the socket yet
            sock.close()


def read_body(response: http.client.HTTPResponse, max_bytes: int, deadline: Deadline) -> bytes:
    """The whole body of ``response``, or :class:`ImageFetchError` when it exceeds ``max_bytes``
    or was cut off by the deadline (a body that ends at close looks complete otherwise)."""
    too_large = f"it is larger than the limit of {max_bytes} bytes"
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageFetchError(f"{too_large} (Content-Length {int(declared)})")
    body = bytearray()
    while chunk := response.read(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise ImageFetchError(too_large)
    if deadline.passed:
        raise deadline.exceeded()
    return bytes(body)


def _connect(url: HttpUrl, deadline: Deadline) -> socket.socket:
    for family, kind, protocol, _, address in _resolve(url, deadline):
        timeout = deadline.remaining()
        sock = socket.socket(family, kind, protocol)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return sock
        except OSError:
            sock.close()
    if deadline.passed:
        raise deadline.exceeded()
    raise ImageFetchError(f"cannot connect to {url.host}:{url.port}")


def _resolve(url: HttpUrl, deadline: Deadline) -> list[tuple]:
    """``getaddrinfo`` for ``url``'s host and port, given up at the deadline (a resolver can
    block for longer than any socket time-out, so it runs in a thread of its own)."""
    answer: list = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(url.socket_host.encode("ascii"), url.port,
                                             type=socket.SOCK_STREAM))
        except OSError:
            answer.append([])

    resolver = threading.Thread(target=lookup, daemon=True)
    resolver.start()
    resolver.join(deadline.remaining())
    if not answer:
        raise deadline.exceeded()
    if not answer[0]:
        raise ImageFetchError(f"cannot resolve the host {url.host}")
    return answer[0]


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """Certificates checked against the system's authorities and certifi's (as ``requests``)."""
    context = ssl.create_default_context()
    context.load_verify_locations(certifi.where())
    return context
