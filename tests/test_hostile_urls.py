"""Hostile image URLs and redirect targets never reach a host that is not allowed.

A *canary* on loopback (127.0.0.1 and ::1, one port) counts every TCP connection it accepts;
"Label Studio" and an allowed image host are recording HTTP servers on other loopback ports.
Every URL in the tables must fail with an :class:`ImageFetchError` that names it, the canary
must see nothing, and the reason must not tell whether some port answered.
"""

import json

import pytest
from loopback_http import TINY_PNG, RawServer, RecordingServer, answer_with_tiny_png

from samiam.errors import ImageFetchError, WriteBackError
from samiam.labelstudio import client
from samiam.labelstudio.client import LabelStudioAccess, write_prediction
from samiam.labelstudio.fetch import fetch_image

KEY = "0123456789abcdef0123456789abcdef01234567"

PORT_STATE_WORDS = ("Errno", "onnection refused", "cannot connect", "failed", "took longer", "reset", "timed out")
"""What a reason could say about a port it tried; a refused URL is refused before connecting."""


class Recorder(RecordingServer):
    """Serves TINY_PNG at ``/data/upload/1/a.png`` (Label Studio) and ``/pub/a.png``, and
    answers ``/hop/<name>`` with a 302 to ``hops[name]`` (bytes, sent as they are) and a
    prediction POST with 201."""

    def __init__(self):
        self.hops: dict[str, bytes] = {}
        super().__init__()

    def route(self, h, method, body):
        if method == "POST":
            return self.send(h, 201, json.dumps(dict(body, id=7)).encode(), "application/json")
        if h.path.startswith("/hop/"):
            return self.send_redirect(h, self.hops[h.path.removeprefix("/hop/")])
        if h.path in ("/data/upload/1/a.png", "/pub/a.png"):
            return self.send(h, 200, TINY_PNG, "image/png")
        return self.send(h, 404, b"not found")

    def auth_headers(self) -> list:
        return [headers.get("Authorization") for _, _, headers, _ in self.requests]


@pytest.fixture
def ls():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def images():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def access(ls, images):
    return LabelStudioAccess(url=ls.url, api_key=KEY, allowed_hosts=(f"localhost:{images.port}",), timeout_s=5)


def _refused(url, access, canary):
    seen = canary.connections
    try:
        fetch_image(url, access)
        message = None
    except ImageFetchError as error:
        message = str(error)
    assert canary.settle() == seen, f"{url!r} reached the canary"
    assert message is not None, f"{url!r} was fetched"
    assert repr(url) in message
    for words in PORT_STATE_WORDS:
        assert words not in message
    return message


# {C}: the canary's port, {L}: Label Studio's, {I}: the allowed image host's (allowed as localhost:{I})
HOSTILE_URLS = [
    r"http://127.0.0.1:{C}\@127.0.0.1:{L}/data/upload/1/a.png",
    r"http://[::1]:{C}\@127.0.0.1:{L}/data/upload/1/a.png",
    r"http://localhost:{C}\@localhost:{I}/pub/a.png",
    r"http:\\127.0.0.1:{C}/data/upload/1/a.png",
    "http://127.0.0.1:{L}@127.0.0.1:{C}/data/upload/1/a.png",
    "http://user:secret@127.0.0.1:{L}/data/upload/1/a.png",
    "http://127.0.0.1:{C}#@127.0.0.1:{L}/data/upload/1/a.png",
    "http://127.0.0.1:{C}?@127.0.0.1:{L}/data/upload/1/a.png",
    "http://127.0.0.1:{C}/data/upload/1/a.png",
    "http://127.0.0.1%3A{C}/pub/a.png",
    "http://%31%32%37.0.0.1:{C}/pub/a.png",
    "http://localhost%2e:{I}/pub/a.png",
    "http://2130706433:{C}/pub/a.png",
    "http://0x7f000001:{C}/pub/a.png",
    "http://0177.0.0.1:{C}/pub/a.png",
    "http://0x7f.0.0.1:{C}/pub/a.png",
    "http://127.1:{C}/pub/a.png",
    "http://127.0.0.1.:{C}/pub/a.png",
    "http://localhost.:{I}/pub/a.png",
    "http://LOCALHOST:{C}/pub/a.png",
    "HTTP://127.0.0.1:{C}/pub/a.png",
    "http://[::1]:{C}/pub/a.png",
    "http://[::ffff:127.0.0.1]:{C}/pub/a.png",
    "http://[::ffff:7f00:1]:{C}/pub/a.png",
    "http://[0:0:0:0:0:0:0:1]:{C}/pub/a.png",
    "http://[fe80::1%25lo]:{C}/pub/a.png",
    "http://::1:{C}/pub/a.png",
    "http://127\u30020\u30020\u30021:{C}/pub/a.png",
    "http://127\uff0e0\uff0e0\uff0e1:{C}/pub/a.png",
    "http://\uff11\uff12\uff17.0.0.1:{C}/pub/a.png",
    "http://loc\u0430lhost:{I}/pub/a.png",
    "http://xn--localhost-:{C}/pub/a.png",
    "http://127.0.0.\t1:{C}/pub/a.png",
    "http://127.0.0.1:{C}\n/pub/a.png",
    " http://127.0.0.1:{C}/pub/a.png",
    "http://127.0.0.1:{C}/pub/a.png\r\nX-Injected: 1",
    "http://127.0.0.1:0{L}/data/upload/1/a.png",
    "http://127.0.0.1:{L}:{C}/data/upload/1/a.png",
    "http://127.0.0.1:/data/upload/1/a.png",
    "http://127.0.0.1:99999/data/upload/1/a.png",
    "https://127.0.0.1:{C}/pub/a.png",
    "javascript:fetch('http://127.0.0.1:{C}/')",
    "gopher://127.0.0.1:{C}/_GET%20/",
    "ftp://127.0.0.1:{C}/pub/a.png",
    "file:///etc/passwd",
    "file://127.0.0.1:{C}/etc/passwd",
    "//127.0.0.1:{C}/pub/a.png",
    "/data/upload/1/a.png\x00",
]


def _fill(template, canary, ls, images):
    return template.format(C=canary.port, L=ls.port, I=images.port)


@pytest.mark.parametrize("template", HOSTILE_URLS)
def test_hostile_url_is_refused_before_any_connection(template, canary, ls, images, access):
    url = _fill(template, canary, ls, images)
    _refused(url, access, canary)
    assert ls.requests == [] and images.requests == []


# Label Studio's /hop/first answers 302 with these Locations ({...} as above; "/hop/<name>" chains)
HOSTILE_REDIRECTS = [
    {"first": r"http://127.0.0.1:{C}\@127.0.0.1:{L}/data/upload/1/a.png"},
    {"first": r"http://[::1]:{C}\@127.0.0.1:{L}/data/upload/1/a.png"},
    {"first": r"/\127.0.0.1:{C}/pub/a.png"},
    {"first": "http://127.0.0.1:{C}/pub/a.png"},
    {"first": "//127.0.0.1:{C}/pub/a.png"},
    {"first": "http://2130706433:{C}/pub/a.png"},
    {"first": "http://127.0.0.1:{C}\t/pub/a.png"},
    {"first": "http://127\u30020\u30020\u30021:{C}/pub/a.png"},
    {"first": "http://[::ffff:127.0.0.1]:{C}/pub/a.png"},
    {"first": "http://user@127.0.0.1:{L}/data/upload/1/a.png"},
    {"first": "gopher://127.0.0.1:{C}/_GET%20/"},
    {"first": "file:///etc/passwd"},
    {"first": "/hop/second", "second": "http://127.0.0.1:{C}/pub/a.png"},
    {"first": "/hop/second", "second": r"http://127.0.0.1:{C}\@127.0.0.1:{L}/data/upload/1/a.png"},
    {"first": "http://localhost:{I}/hop/second", "second": "http://127.0.0.1:{C}/pub/a.png"},
    {"first": "/hop/first"},
]


@pytest.mark.parametrize("hops", HOSTILE_REDIRECTS, ids=lambda hops: " -> ".join(hops.values()))
def test_hostile_redirect_is_refused_before_connecting_to_it(hops, canary, ls, images, access):
    for server in (ls, images):
        server.hops = {name: _fill(location, canary, ls, images).encode() for name, location in hops.items()}
    message = _refused(f"{ls.url}/hop/first", access, canary)
    assert "redirect" in message
    assert all(path.startswith("/hop/") for _, path, _, _ in ls.requests + images.requests)
    assert None not in ls.auth_headers() and images.auth_headers() in ([], [None])


def test_refusal_reads_the_same_for_an_open_and_a_closed_port(canary, access):
    closed = RawServer(answer_with_tiny_png)
    closed.close()
    reasons = {port: str(_refused(f"http://127.0.0.1:{port}/pub/a.png", access, canary)).replace(str(port), "P")
               for port in (canary.port, closed.port)}
    assert reasons[canary.port] == reasons[closed.port]


# -- what must still work -------------------------------------------------------------------

def test_label_studio_url_fetches_with_the_key(ls, access):
    assert fetch_image(f"{ls.url}/data/upload/1/a.png", access) == TINY_PNG
    assert fetch_image("/data/upload/1/a.png", access) == TINY_PNG
    assert fetch_image(f"HTTP://127.0.0.1:{ls.port}/data/upload/1/a.png#frag", access) == TINY_PNG
    assert ls.auth_headers() == [f"Token {KEY}"] * 3


def test_allowed_image_host_gets_no_key(images, access):
    assert fetch_image(f"http://localhost:{images.port}/pub/a.png", access) == TINY_PNG
    assert images.auth_headers() == [None]


def test_redirect_from_label_studio_to_an_allowed_host_drops_the_key(ls, images, access):
    ls.hops = {"first": f"http://localhost:{images.port}/pub/a.png".encode()}
    assert fetch_image(f"{ls.url}/hop/first", access) == TINY_PNG
    assert ls.auth_headers() == [f"Token {KEY}"]
    assert images.auth_headers() == [None]


@pytest.mark.parametrize("template", [r"http://127.0.0.1:{C}\@127.0.0.1:{L}", "http://127.0.0.1:{L}@127.0.0.1:{C}",
                                      "http://2130706433:{C}", "http://127.0.0.1:{C}\n"])
def test_write_back_refuses_a_hostile_label_studio_url(template, canary, ls, images):
    url = _fill(template, canary, ls, images)
    seen = canary.connections
    with pytest.raises(WriteBackError, match="refused"):
        write_prediction(1, {"result": []}, LabelStudioAccess(url=url, api_key=KEY))
    assert canary.settle() == seen and ls.requests == []


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_proxy_settings_in_the_environment_are_ignored(variable, monkeypatch, canary, ls, access):
    client._sdk_client.cache_clear()
    monkeypatch.setenv(variable, f"http://127.0.0.1:{canary.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    seen = canary.connections
    assert fetch_image("/data/upload/1/a.png", access) == TINY_PNG
    assert write_prediction(1, {"result": []}, access) == 7
    assert canary.settle() == seen
    assert [(method, headers["Authorization"]) for method, _, headers, _ in ls.requests] == [
        ("GET", f"Token {KEY}"), ("POST", f"Token {KEY}")]
    client._sdk_client.cache_clear()
