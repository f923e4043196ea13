"""The whole image download ends within ``timeout_s``: slow servers, chains and resolvers included.

Each server here keeps every single read short (a byte every 0.1 s, or answers that each take
less than the limit), so only a deadline on the whole download stops it.
"""

import threading
import time

import pytest
from loopback_http import TINY_PNG, RawServer, RecordingServer

from samiam.errors import ImageFetchError
from samiam.labelstudio import client, transport
from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.fetch import fetch_image

LIMIT_S = 1.5
SLACK_S = 1.0
"""How long after the limit a fetch may still be running (thread wake-ups on a busy machine)."""
DRIP_S = 0.1
DRIP_FOR_S = 8.0
"""The trickling servers give up after this long, so code without a deadline fails instead of hanging."""


def _trickle(connection, head: bytes):
    connection.recv(65536)
    connection.sendall(head)
    end = time.monotonic() + DRIP_FOR_S
    while time.monotonic() < end:
        connection.sendall(b"x")
        time.sleep(DRIP_S)


def _headers_never_end(connection):
    _trickle(connection, b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Slow: ")


def _body_with_length(connection):
    _trickle(connection, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + TINY_PNG)


def _body_until_close(connection):
    _trickle(connection, b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n" + TINY_PNG)


class SlowLabelStudio(RecordingServer):
    """Each answer waits ``delay_s``: ``/hop/<n>`` redirects to ``/hop/<n-1>``, ``/hop/0`` to
    the image; ``/api/token/refresh/`` hands out an access token."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        super().__init__()

    def route(self, h, method, body):
        time.sleep(self.delay_s)
        if method == "POST":
            return self.send(h, 200, b'{"access": "header.payload.signature"}', "application/json")
        if h.path.startswith("/hop/"):
            left = int(h.path.removeprefix("/hop/"))
            return self.send_redirect(h, f"/hop/{left - 1}".encode() if left else b"/data/upload/1/a.png")
        return self.send(h, 200, TINY_PNG, "image/png")


def _assert_cut_off(url, access):
    start = time.monotonic()
    with pytest.raises(ImageFetchError) as info:
        fetch_image(url, access)
    elapsed = time.monotonic() - start
    assert f"took longer than {LIMIT_S:g} s" in str(info.value)
    assert elapsed < LIMIT_S + SLACK_S, f"the fetch ran {elapsed:.1f} s"


@pytest.mark.parametrize("answer", [_headers_never_end, _body_with_length, _body_until_close])
def test_a_trickling_server_is_cut_off_at_the_limit(answer):
    server = RawServer(answer)
    try:
        access = LabelStudioAccess(url=f"http://127.0.0.1:{server.port}", api_key="k" * 40, timeout_s=LIMIT_S)
        _assert_cut_off("/data/upload/1/a.png", access)
    finally:
        server.close()


def test_the_limit_holds_across_a_redirect_chain():
    server = SlowLabelStudio(delay_s=0.6)  # 5 answers, each far below the limit, 3 s in all
    try:
        access = LabelStudioAccess(url=server.url, api_key="k" * 40, timeout_s=LIMIT_S)
        _assert_cut_off(f"{server.url}/hop/3", access)
    finally:
        server.close()


def test_the_limit_includes_the_token_refresh():
    client._access_tokens.clear()
    server = SlowLabelStudio(delay_s=1.4)  # refresh + image: 2.8 s, each below the limit
    try:
        access = LabelStudioAccess(url=server.url, api_key="refresh.token.jwt", timeout_s=LIMIT_S)
        _assert_cut_off("/data/upload/1/a.png", access)
    finally:
        server.close()
        client._access_tokens.clear()


@pytest.fixture
def hanging_resolver(monkeypatch):
    released = threading.Event()

    def getaddrinfo(*args, **kwargs):
        released.wait(DRIP_FOR_S)
        raise OSError("no answer from the resolver")

    monkeypatch.setattr(transport.socket, "getaddrinfo", getaddrinfo)
    yield
    released.set()


def test_a_hanging_name_lookup_is_cut_off_at_the_limit(hanging_resolver):
    access = LabelStudioAccess(url=None, api_key=None, allowed_hosts=("images.invalid",), timeout_s=LIMIT_S)
    _assert_cut_off("http://images.invalid/a.png", access)
