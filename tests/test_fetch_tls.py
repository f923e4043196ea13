"""HTTPS image downloads: the certificate is checked before any request (so before the key is
sent), and a trusted one works through the fetcher's own connection code."""

import ssl
from pathlib import Path

import pytest
from loopback_http import TINY_PNG, RecordingServer

from samiam.errors import ImageFetchError
from samiam.labelstudio import transport
from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.fetch import fetch_image

TLS = Path(__file__).parent / "data" / "tls"
KEY = "0123456789abcdef0123456789abcdef01234567"


class HttpsLabelStudio(RecordingServer):
    def __init__(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
        super().__init__(tls=context)

    def route(self, h, method, body):
        self.send(h, 200, TINY_PNG, "image/png")


@pytest.fixture
def ls():
    server = HttpsLabelStudio()
    yield server
    server.close()


def test_an_untrusted_certificate_is_refused_before_the_request(ls):
    with pytest.raises(ImageFetchError, match=f"TLS certificate of 127.0.0.1:{ls.port} is not trusted"):
        fetch_image("/data/upload/1/a.png", LabelStudioAccess(url=ls.url, api_key=KEY, timeout_s=5))
    assert ls.requests == []


def test_a_trusted_certificate_fetches_over_https_with_the_key(ls, monkeypatch):
    trusting = ssl.create_default_context(cafile=TLS / "cert.pem")
    monkeypatch.setattr(transport, "_tls_context", lambda: trusting)
    assert fetch_image("/data/upload/1/a.png", LabelStudioAccess(url=ls.url, api_key=KEY, timeout_s=5)) == TINY_PNG
    assert [headers["Authorization"] for _, _, headers, _ in ls.requests] == [f"Token {KEY}"]
