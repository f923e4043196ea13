"""fetch_image / write_prediction against a small HTTP server on 127.0.0.1 that plays Label Studio."""

import json
import socket
import time

import jwt
import pytest
from loopback_http import TINY_PNG, RecordingServer

from samiam.errors import ImageFetchError, WriteBackError
from samiam.labelstudio import client
from samiam.labelstudio.client import LabelStudioAccess, write_prediction
from samiam.labelstudio.fetch import fetch_image

KEY = "test-hmac-key-of-at-least-32-bytes"
LEGACY = "0123456789abcdef0123456789abcdef01234567"
REFRESH = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 10**6}, KEY, algorithm="HS256")
ACCESS = jwt.encode({"token_type": "access", "exp": int(time.time()) + 300}, KEY, algorithm="HS256")
GOOD_AUTH = {f"Token {LEGACY}", f"Bearer {ACCESS}"}
LEAK = "bytes-of-the-server"
"""Sent by the fake server in a reason phrase, Content-Type and body; no error may repeat it."""
PNG = TINY_PNG


class FakeServer(RecordingServer):
    """Plays Label Studio and an image host; ``redirect_to`` is where ``/redirect`` points."""

    def __init__(self):
        self.refreshes = 0
        self.redirect_to = ""
        super().__init__()

    def route(self, h, method, body):
        authorised = h.headers.get("Authorization") in GOOD_AUTH
        if method == "POST" and h.path == "/api/token/refresh/":
            self.refreshes += 1
            if body == {"refresh": REFRESH}:
                return self.send(h, 200, json.dumps({"access": ACCESS}).encode(), "application/json")
            return self.send(h, 401, b'{"detail": "bad token"}', "application/json")
        if method == "POST" and h.path.rstrip("/") == "/api/predictions":
            if not authorised:
                return self.send(h, 401, b'{"detail": "no auth"}', "application/json")
            if body["task"] != 1:
                return self.send(h, 400, b'{"task": ["Invalid pk"]}', "application/json")
            answer = dict(body, id=42, project=1)
            return self.send(h, 201, json.dumps(answer).encode(), "application/json")
        if h.path in ("/data/upload/1/a.png", "/data/local-files/?d=em/a.png", "/pub/a.png"):
            if h.path.startswith("/data/") and not authorised:
                return self.send(h, 401, b'{"detail": "Authentication credentials were not provided."}')
            return self.send(h, 200, PNG, "image/png")
        if h.path == "/redirect":
            return self.send_redirect(h, self.redirect_to.encode())
        if h.path == "/huge-declared":
            h.send_response(200)
            h.send_header("Content-Length", str(10**9))
            h.end_headers()
            return h.wfile.write(PNG)
        if h.path == "/huge-streamed":
            h.send_response(200)
            h.end_headers()  # no Content-Length: HTTP/1.0 body until close
            h.wfile.write(PNG + b"\0" * 5000)
            return None
        if h.path in ("/leaky-200", "/leaky-404"):
            h.send_response(int(h.path[-3:]), f"Phrase {LEAK}")
            h.send_header("Content-Type", f"text/{LEAK}")
            h.send_header("Content-Length", str(len(LEAK)))
            h.end_headers()
            return h.wfile.write(LEAK.encode())
        if h.path == "/page":
            return self.send(h, 200, b"<html>login</html>", "text/html")
        if h.path == "/slow":
            time.sleep(1.0)
            return self.send(h, 200, PNG, "image/png")
        return self.send(h, 404, b"not found")


@pytest.fixture
def ls():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture
def other():
    server = FakeServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    client._access_tokens.clear()
    client._sdk_client.cache_clear()


def _access(ls, key=LEGACY, **kwargs):
    return LabelStudioAccess(url=ls.url, api_key=key, **kwargs)


# -- happy paths ----------------------------------------------------------------------------

def test_relative_upload_url_with_legacy_token(ls):
    assert fetch_image("/data/upload/1/a.png", _access(ls)) == PNG
    assert ls.requests[-1][2]["Authorization"] == f"Token {LEGACY}"


def test_local_files_url_and_absolute_url_on_the_label_studio_host(ls):
    assert fetch_image("/data/local-files/?d=em/a.png", _access(ls)) == PNG
    assert fetch_image(f"{ls.url}/data/upload/1/a.png", _access(ls)) == PNG


def test_personal_access_token_is_refreshed_once_and_cached(ls):
    access = _access(ls, key=REFRESH)
    assert fetch_image("/data/upload/1/a.png", access) == PNG
    assert fetch_image("/data/upload/1/a.png", access) == PNG
    assert ls.refreshes == 1
    assert ls.requests[-1][2]["Authorization"] == f"Bearer {ACCESS}"


def test_allowed_host_gets_no_label_studio_credentials(ls, other):
    host = other.url.removeprefix("http://")
    assert fetch_image(f"{other.url}/pub/a.png", _access(ls, allowed_hosts=(host,))) == PNG
    assert "Authorization" not in other.requests[-1][2]


def test_redirect_within_label_studio_is_followed_with_auth(ls):
    ls.redirect_to = "/data/upload/1/a.png"
    assert fetch_image(f"{ls.url}/redirect", _access(ls)) == PNG
    assert [r[1] for r in ls.requests] == ["/redirect", "/data/upload/1/a.png"]


def test_local_file_under_root(tmp_path):
    (tmp_path / "em").mkdir()
    (tmp_path / "em" / "a.png").write_bytes(PNG)
    access = LabelStudioAccess(url=None, api_key=None, local_root=str(tmp_path))
    assert fetch_image(str(tmp_path / "em" / "a.png"), access) == PNG
    assert fetch_image(f"file://{tmp_path}/em/a.png", access) == PNG
    assert fetch_image("em/a.png", access) == PNG


# -- refusals -------------------------------------------------------------------------------

def _refused(url, access, *says):
    with pytest.raises(ImageFetchError) as info:
        fetch_image(url, access)
    message = str(info.value)
    assert repr(url) in message
    for text in says:
        assert text in message
    return message


def test_foreign_host_is_refused_without_a_request(ls, other):
    _refused(f"{other.url}/pub/a.png", _access(ls), "neither Label Studio")
    assert other.requests == []


def test_redirect_to_a_foreign_host_is_refused(ls, other):
    ls.redirect_to = f"{other.url}/pub/a.png"
    _refused(f"{ls.url}/redirect", _access(ls), "neither Label Studio", "after 1 redirect")
    assert other.requests == []


def test_wrong_token_says_401_and_hints_at_the_key(ls):
    _refused("/data/upload/1/a.png", _access(ls, key="f" * 40), "HTTP 401", "LABEL_STUDIO_API_KEY")


def test_bad_refresh_token(ls):
    bad = jwt.encode({"token_type": "refresh", "exp": int(time.time()) + 99}, "another-hmac-key-of-at-least-32-bytes", algorithm="HS256")
    with pytest.raises(ImageFetchError, match="cannot refresh the personal access token.*401") as info:
        fetch_image("/data/upload/1/a.png", _access(ls, key=bad))
    assert "bad token" not in str(info.value)  # the body Label Studio answered


def test_missing_file_is_404(ls):
    _refused("/data/upload/1/missing.png", _access(ls), "HTTP 404")


def test_too_large_by_content_length_and_by_stream(ls):
    _refused(f"{ls.url}/huge-declared", _access(ls, max_bytes=4096), "larger than", "Content-Length")
    _refused(f"{ls.url}/huge-streamed", _access(ls, max_bytes=4096), "larger than the limit of 4096")


def test_non_image_is_refused_naming_size_and_listed_content_type_only(ls):
    message = _refused(f"{ls.url}/page", _access(ls), "not an image", "18 bytes of text/html")
    assert "login" not in message
    message = _refused(f"{ls.url}/leaky-200", _access(ls), "not an image", "of an unlisted Content-Type")
    assert LEAK not in message


def test_http_error_reason_is_our_phrase_not_the_servers(ls):
    message = _refused(f"{ls.url}/leaky-404", _access(ls), "HTTP 404 Not Found")
    assert LEAK not in message


def test_timeout(ls):
    _refused(f"{ls.url}/slow", _access(ls, timeout_s=0.2), "took longer than 0.2 s")


def test_unreachable_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    access = LabelStudioAccess(url=f"http://127.0.0.1:{port}", api_key=LEGACY)
    _refused("/data/upload/1/a.png", access, "cannot connect")


def test_relative_url_without_label_studio_url():
    _refused("/data/upload/1/a.png", LabelStudioAccess(url=None, api_key=LEGACY), "LABEL_STUDIO_URL")


@pytest.mark.parametrize("url", ["ftp://example.org/a.png", "s3://bucket/a.png", "gopher://x/"])
def test_other_schemes_are_refused(url):
    _refused(url, LabelStudioAccess(url=None, api_key=None), "not supported")


def test_local_paths_refused_without_root(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG)
    _refused(str(tmp_path / "a.png"), LabelStudioAccess(url=None, api_key=None), "not allowed")


def test_local_paths_outside_root_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    access = LabelStudioAccess(url=None, api_key=None, local_root=str(root))
    _refused(str(tmp_path / "secret.png"), access, "outside the local root")
    _refused(f"{root}/../secret.png", access, "outside the local root")
    _refused("../secret.png", access, "outside the local root")
    _refused(f"file://{root}/link.png", access, "outside the local root")
    _refused(str(root / "nope.png"), access, "no such file")
    (root / "notes.txt").write_text("hello")
    _refused(str(root / "notes.txt"), access, "not an image")


# -- write-back -----------------------------------------------------------------------------

PREDICTION = {"result": [{"type": "brushlabels", "value": {"rle": [1, 2]}}], "score": 0.5, "model_version": "v1"}


@pytest.mark.parametrize("key, header", [(LEGACY, f"Token {LEGACY}"), (REFRESH, f"Bearer {ACCESS}")])
def test_write_prediction_posts_and_returns_the_id(ls, key, header):
    assert write_prediction(1, PREDICTION, _access(ls, key=key)) == 42
    method, path, headers, body = ls.requests[-1]
    assert (method, path.rstrip("/"), headers["Authorization"]) == ("POST", "/api/predictions", header)
    assert body == dict(PREDICTION, task=1)


def test_write_prediction_names_the_project_when_given(ls):
    write_prediction(1, PREDICTION, _access(ls, key=LEGACY), project=7)
    assert ls.requests[-1][3] == dict(PREDICTION, task=1, project=7)


def test_write_prediction_refused_by_label_studio(ls):
    with pytest.raises(WriteBackError, match="task 7.*HTTP 400 Bad Request") as info:
        write_prediction(7, PREDICTION, _access(ls))
    assert "Invalid pk" not in str(info.value)  # the body Label Studio answered


def test_write_prediction_needs_url_and_key():
    with pytest.raises(WriteBackError, match="LABEL_STUDIO_API_KEY"):
        write_prediction(1, PREDICTION, LabelStudioAccess(url="http://127.0.0.1:1", api_key=None))


def test_write_prediction_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(WriteBackError, match="cannot write the prediction of task 1"):
        write_prediction(1, PREDICTION, LabelStudioAccess(url=f"http://127.0.0.1:{port}", api_key=LEGACY))


def test_local_paths_with_control_characters_are_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG)
    access = LabelStudioAccess(url=None, api_key=None, local_root=str(tmp_path))
    _refused("a.png\x00.txt", access, "control character")
    _refused(f"file://{tmp_path}/a.png%00.txt", access, "control character")
    _refused("a\x1b[2Jb.png", access, "control character")
    _refused("x" * 5000 + ".png", access, "cannot read")  # the OS refuses the name: still our error


def test_file_url_naming_another_host_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG)
    access = LabelStudioAccess(url=None, api_key=None, local_root=str(tmp_path))
    _refused(f"file://fileserver{tmp_path}/a.png", access, "another host")
    assert fetch_image(f"file://localhost{tmp_path}/a.png", access) == PNG


@pytest.mark.parametrize("entry", ["images.example.org.", "user@host", "host:0", "ｈｏｓｔ", "[::ffff:1.2.3.4]"])
def test_a_bad_allowed_host_entry_is_named(ls, entry):
    _refused("http://images.example.org/a.png", _access(ls, allowed_hosts=(entry,)),
             f"the allowed image host {entry!r} (SAMIAM_IMAGE_HOSTS) is refused")


def test_a_bad_label_studio_url_is_named():
    access = LabelStudioAccess(url="http://ls.example:8080\\@evil:80", api_key=LEGACY)
    _refused("/data/upload/1/a.png", access, "Label Studio's URL", "backslash")

