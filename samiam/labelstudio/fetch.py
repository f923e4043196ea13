"""Fetch a task's image: from Label Studio, an allowed image host, or a local file.

Image URLs come from task data (``task["data"][value_key]``) and are untrusted. The rules:

* ``http(s)://`` URLs are parsed once, strictly (:mod:`samiam.labelstudio.urls`: no user info,
  backslashes, whitespace, control or non-ASCII characters, percent-encoded or non-canonical
  hosts), and the URL rebuilt from the checked parts is what is fetched.
* The host must be Label Studio's exact origin (scheme, host and port of
  :attr:`LabelStudioAccess.url`) or listed in :attr:`LabelStudioAccess.allowed_hosts` (``host``:
  any port, ``host:port``: that port). A refused URL is refused before any connection.
* The API key goes only to Label Studio's exact origin.
* ``/data/...`` (Label Studio's uploads and local-files storage) is relative to Label Studio.
* Redirects (at most :data:`MAX_REDIRECTS`) go through the same parse and check; one that
  leaves Label Studio's origin drops the key. A redirect *from Label Studio* may also go to a
  storage host (:attr:`LabelStudioAccess.storage_hosts`: where Label Studio's presigned URLs
  point, see :mod:`samiam.labelstudio.storage`), never with the key.
* The whole download — every redirect and a token refresh included — ends within
  :attr:`LabelStudioAccess.timeout_s`; the body is capped at :attr:`LabelStudioAccess.max_bytes`
  and must start like a PNG, JPEG or TIFF.
* ``file://`` URLs and plain paths are read only under :attr:`LabelStudioAccess.local_root`
  (after resolving ``..`` and symlinks); control characters are refused.
* Reasons name the task's URL but repeat nothing a server sent (no body, reason phrase,
  redirect target or header value), except the checked ``host:port`` of a refused redirect from
  Label Studio (the storage host an operator would list).
"""

from __future__ import annotations

import http.client
import re
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from samiam.errors import ImageFetchError
from samiam.labelstudio.client import KEY_HINT, LabelStudioAccess, auth_headers, label_studio_url, status_text
from samiam.labelstudio.transport import Deadline, exchange, read_body
from samiam.labelstudio.urls import HttpUrl, check_characters, parse_authority, parse_http_url

LABEL_STUDIO_PATH_PREFIX = "/data/"
"""Scheme-less URLs starting with this are Label Studio's (uploads, local-files storage)."""

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"II+\x00": "BigTIFF",
    b"MM\x00+": "BigTIFF",
}

NAMED_CONTENT_TYPES = frozenset({
    "image/png", "image/jpeg", "image/tiff", "image/gif", "image/webp", "image/bmp", "image/svg+xml",
    "text/html", "text/plain", "text/xml", "application/json", "application/xml", "application/octet-stream",
})
"""Content types a "not an image" reason may name; any other is only called unlisted."""

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def fetch_image(url: str, access: LabelStudioAccess) -> bytes:
    """The bytes of a task's image, from Label Studio, an allowed host or a local file.

    ``url`` as Label Studio puts it in task data: ``/data/upload/1/x.png`` or
    ``/data/local-files/?d=...`` (relative to ``access.url``), an absolute http(s) URL on the
    Label Studio origin or an allowed host, ``file:///...`` or a plain path under
    ``access.local_root``. Raises :class:`ImageFetchError` naming the URL and the reason.
    """
    if _CONTROL.search(url):
        raise ImageFetchError(f"refused to fetch {url!r}: it contains a control character")
    scheme = _SCHEME.match(url)
    kind = scheme[0][:-1].lower() if scheme else ""
    if kind in ("http", "https") or (not kind and url.startswith(LABEL_STUDIO_PATH_PREFIX)):
        try:
            target = parse_http_url(url) if kind else label_studio_target(url, access)
        except ImageFetchError as error:
            raise ImageFetchError(f"refused to fetch {url!r}: {error}") from None
        return download(url, target, access)
    if kind == "file":
        return _read_local(url, _file_url_path(url), access)
    if kind:
        raise ImageFetchError(f"cannot fetch {url!r}: scheme {kind!r} is not supported "
                              f"(http, https, file, or a Label Studio {LABEL_STUDIO_PATH_PREFIX} path)")
    return _read_local(url, url, access)


def label_studio_target(path: str, access: LabelStudioAccess) -> HttpUrl:
    """``path`` (``/...?query``) on Label Studio's URL, checked like a URL."""
    base = label_studio_url(access)
    return base.with_target(base.target.rstrip("/") + path)


def download(url: str, target: HttpUrl, access: LabelStudioAccess) -> bytes:
    """The image at ``target`` (the checked parts of the task's ``url``, which reasons name),
    following permitted redirects, all within ``access.timeout_s``."""
    deadline = Deadline(access.timeout_s)
    on_label_studio = False
    for hop in range(MAX_REDIRECTS + 1):
        where = repr(url) if hop == 0 else f"{url!r} (after {hop} redirect{'s' * (hop > 1)})"
        try:
            on_label_studio = _is_label_studio(target, access, redirected_by_label_studio=on_label_studio)
        except ImageFetchError as error:
            raise ImageFetchError(f"refused to fetch {where}: {error}") from None
        try:
            target, image = _get(target, on_label_studio, access, deadline)
        except ImageFetchError as error:
            raise ImageFetchError(f"cannot fetch {where}: {error}") from None
        if image is not None:
            return image
    raise ImageFetchError(f"cannot fetch {url!r}: more than {MAX_REDIRECTS} redirects")


def _is_label_studio(target: HttpUrl, access: LabelStudioAccess, redirected_by_label_studio: bool) -> bool:
    """Whether ``target`` is on Label Studio's exact origin (else on an allowed image host, or a
    storage host Label Studio redirected to, or refused)."""
    if access.url and target.origin == label_studio_url(access).origin:
        return True
    if _is_allowed(target, access.allowed_hosts, "allowed image host", "SAMIAM_IMAGE_HOSTS"):
        return False
    if redirected_by_label_studio and _is_allowed(target, access.storage_hosts, "storage host",
                                                  "SAMIAM_STORAGE_HOSTS"):
        return False
    # a redirect from Label Studio names the checked, canonical host:port (no path or query):
    # the storage host an operator would list
    storage = (f" nor a storage host {list(access.storage_hosts)} (SAMIAM_STORAGE_HOSTS), to which Label "
               f"Studio redirects: {target.host}:{target.port}") if redirected_by_label_studio else ""
    raise ImageFetchError(f"its host is neither Label Studio ({access.url}) nor an allowed image "
                          f"host {list(access.allowed_hosts)} (SAMIAM_IMAGE_HOSTS){storage}")


def _get(target: HttpUrl, on_label_studio: bool, access: LabelStudioAccess,
         deadline: Deadline) -> tuple[HttpUrl, bytes | None]:
    """One request: (where it redirects, None) or (``target``, the image)."""
    headers = auth_headers(access, deadline) if on_label_studio else {}
    with exchange("GET", target, headers, deadline) as response:
        if response.status in REDIRECT_STATUSES:
            return _redirect_target(target, response), None
        if not 200 <= response.status < 300:
            hint = KEY_HINT if on_label_studio and response.status in (401, 403) else ""
            raise ImageFetchError(f"{status_text(response.status)}{hint}")
        data = read_body(response, access.max_bytes, deadline)
        return target, _check_image(data, response.getheader("Content-Type"))


def _redirect_target(current: HttpUrl, response: http.client.HTTPResponse) -> HttpUrl:
    location = response.getheader("Location")
    if location is None:
        raise ImageFetchError(f"{status_text(response.status)} without a Location")
    try:
        check_characters(location)  # before urljoin, which would drop tabs and newlines
        return parse_http_url(urljoin(str(current), location))
    except ImageFetchError as error:
        raise ImageFetchError(f"its redirect is refused: {error}") from None


def _is_allowed(target: HttpUrl, entries: tuple[str, ...], kind: str, setting: str) -> bool:
    """Whether ``target`` is on one of ``entries`` (``host``: any port, ``host:port``: that port)."""
    for entry in entries:
        try:
            host, port = parse_authority(entry)
        except ImageFetchError as error:
            raise ImageFetchError(f"the {kind} {entry!r} ({setting}) is refused: {error}") from None
        if host == target.host and port in (None, target.port):
            return True
    return False


def _check_image(data: bytes, content_type: str | None = None) -> bytes:
    if any(data.startswith(signature) for signature in IMAGE_SIGNATURES):
        return data
    kinds = ", ".join(sorted(set(IMAGE_SIGNATURES.values())))
    found = f"{len(data)} bytes"
    if content_type is not None:
        media_type = content_type.split(";")[0].strip().lower()
        found += f" of {media_type}" if media_type in NAMED_CONTENT_TYPES else " of an unlisted Content-Type"
    raise ImageFetchError(f"it is not an image ({kinds}): {found}")


# -- local files ----------------------------------------------------------------------------

def _file_url_path(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ImageFetchError(f"refused to read {url!r}: it is not a file:// URL") from None
    if parts.netloc not in ("", "localhost"):
        raise ImageFetchError(f"refused to read {url!r}: a file:// URL must not name another host")
    path = unquote(parts.path)
    if _CONTROL.search(path):
        raise ImageFetchError(f"refused to read {url!r}: it contains a control character")
    return path


def _read_local(url: str, path: str, access: LabelStudioAccess) -> bytes:
    if access.local_root is None:
        raise ImageFetchError(f"refused to read {url!r}: local files are not allowed (no local root is set)")
    try:
        root = Path(access.local_root).resolve()
        target = (root / path).resolve()  # an absolute path replaces root; symlinks and .. are resolved
        if not target.is_relative_to(root):
            raise ImageFetchError(f"refused to read {url!r}: {target} is outside the local root {root}")
        if not target.is_file():
            raise ImageFetchError(f"cannot read {url!r}: no such file {target}")
        if target.stat().st_size > access.max_bytes:
            raise ImageFetchError(f"refused to read {url!r}: larger than the limit of {access.max_bytes} bytes")
        data = target.read_bytes()
    except OSError as error:
        raise ImageFetchError(f"cannot read {url!r}: {error.strerror or 'the file cannot be read'}") from None
    try:
        return _check_image(data)
    except ImageFetchError as error:
        raise ImageFetchError(f"cannot read {url!r}: {error}") from None
