"""Talk to Label Studio: fetch a task's image, write a prediction back.

Image URLs come from task data (``task["data"][value_key]``) and are untrusted: only Label
Studio's own host gets the API key, other hosts must be listed in
:attr:`LabelStudioAccess.allowed_hosts`, redirects are followed only to permitted hosts, local
files only under :attr:`LabelStudioAccess.local_root`, and the body is capped and must look like
an image.

Label Studio 1.23 accepts two kinds of API key: a legacy token (``Authorization: Token <key>``)
and a personal access token, a JWT *refresh* token exchanged at ``/api/token/refresh/`` for an
access token that lives 300 s (``Authorization: Bearer <access>``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import httpx
import requests
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from samiam.errors import ImageFetchError, WriteBackError

LABEL_STUDIO_PATH_PREFIX = "/data/"
"""Scheme-less URLs starting with this are Label Studio's (uploads, local-files storage)."""

ACCESS_TOKEN_TTL_S = 240.0
"""How long a refreshed access token is reused (Label Studio's live 300 s)."""

MAX_REDIRECTS = 5
CHUNK_BYTES = 2**16

IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"II+\x00": "BigTIFF",
    b"MM\x00+": "BigTIFF",
}


@dataclass(frozen=True)
class LabelStudioAccess:
    """How to reach Label Studio and which image sources are allowed."""

    url: str | None
    """Label Studio base URL (env ``LABEL_STUDIO_URL``, or ``hostname`` from /setup)."""
    api_key: str | None
    """Legacy token or personal access token (env ``LABEL_STUDIO_API_KEY``, or /setup's ``access_token``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra hosts (``host`` or ``host:port``) images may come from; they never get the API key."""
    local_root: str | None = None
    """Folder that local paths and ``file://`` URLs must lie in (None: local files refused)."""
    max_bytes: int = 256 * 2**20
    timeout_s: float = 30.0
    """Limit for connecting, for each read, and for the whole download."""


def fetch_image(url: str, access: LabelStudioAccess) -> bytes:
    """The bytes of a task's image, from Label Studio, an allowed host or a local file.

    ``url`` as Label Studio puts it in task data: ``/data/upload/1/x.png`` or
    ``/data/local-files/?d=...`` (relative to ``access.url``), an absolute http(s) URL on the
    Label Studio host or an allowed host, ``file:///...`` or a plain path under
    ``access.local_root``. Raises :class:`ImageFetchError` naming the URL and the reason.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return _fetch_http(url, access)
    if not parts.scheme and url.startswith(LABEL_STUDIO_PATH_PREFIX):
        if not access.url:
            raise ImageFetchError(f"cannot fetch {url!r}: it is relative to Label Studio, whose URL is "
                                  f"unknown (set LABEL_STUDIO_URL)")
        return _fetch_http(urljoin(access.url.rstrip("/") + "/", url.lstrip("/")), access)
    if parts.scheme == "file":
        return _read_local(url, unquote(parts.path), access)
    if not parts.scheme:
        return _read_local(url, url, access)
    raise ImageFetchError(f"cannot fetch {url!r}: scheme {parts.scheme!r} is not supported "
                          f"(http, https, file, or a Label Studio {LABEL_STUDIO_PATH_PREFIX} path)")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        raise ImageFetchError(f"cannot fetch {url!r}: invalid port") from None
    return parts.scheme, (parts.hostname or "").lower(), port


def _is_label_studio(url: str, access: LabelStudioAccess) -> bool:
    return bool(access.url) and _origin(url) == _origin(access.url)


def _is_allowed(url: str, access: LabelStudioAccess) -> bool:
    _, host, port = _origin(url)
    allowed = {h.lower() for h in access.allowed_hosts}
    return host in allowed or f"{host}:{port}" in allowed


def _fetch_http(url: str, access: LabelStudioAccess) -> bytes:
    deadline = time.monotonic() + access.timeout_s
    target = url
    for _ in range(MAX_REDIRECTS + 1):
        where = repr(url) if target == url else f"{url!r} (redirected to {target!r})"
        if _is_label_studio(target, access):
            headers = _auth_headers(access)
        elif _is_allowed(target, access):
            headers = {}
        else:
            raise ImageFetchError(
                f"refused to fetch {where}: host {urlsplit(target).netloc!r} is neither Label Studio "
                f"({access.url}) nor an allowed image host {list(access.allowed_hosts)}")
        try:
            response = requests.get(target, headers=headers, stream=True, allow_redirects=False,
                                    timeout=access.timeout_s)
        except requests.Timeout:
            raise ImageFetchError(f"cannot fetch {where}: no answer within {access.timeout_s:g} s") from None
        except requests.RequestException as error:
            raise ImageFetchError(f"cannot fetch {where}: cannot connect ({error})") from None
        with response:
            if response.is_redirect:
                target = urljoin(target, response.headers["Location"])
                continue
            _check_status(where, response)
            return _check_image(where, _read_capped(where, response, access, deadline))
    raise ImageFetchError(f"cannot fetch {url!r}: more than {MAX_REDIRECTS} redirects")


def _check_status(where: str, response: requests.Response) -> None:
    if response.status_code < 400:
        return
    hint = ""
    if response.status_code in (401, 403):
        hint = (" - check LABEL_STUDIO_API_KEY: Label Studio 1.23 disables legacy tokens by default, "
                "use a personal access token or enable legacy tokens for the organization")
    raise ImageFetchError(f"cannot fetch {where}: HTTP {response.status_code} {response.reason}{hint}")


def _read_capped(where: str, response: requests.Response, access: LabelStudioAccess,
                 deadline: float) -> bytes:
    too_large = f"refused to fetch {where}: larger than the limit of {access.max_bytes} bytes"
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > access.max_bytes:
        raise ImageFetchError(f"{too_large} (Content-Length {declared})")
    body = bytearray()
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            body += chunk
            if len(body) > access.max_bytes:
                raise ImageFetchError(too_large)
            if time.monotonic() > deadline:
                raise ImageFetchError(f"cannot fetch {where}: download took longer than {access.timeout_s:g} s")
    except requests.RequestException as error:
        raise ImageFetchError(f"cannot fetch {where}: download failed ({error})") from None
    return bytes(body)


def _read_local(url: str, path: str, access: LabelStudioAccess) -> bytes:
    if access.local_root is None:
        raise ImageFetchError(f"refused to read {url!r}: local files are not allowed (no local root is set)")
    root = Path(access.local_root).resolve()
    target = (root / path).resolve()  # an absolute path replaces root; symlinks and .. are resolved
    if not target.is_relative_to(root):
        raise ImageFetchError(f"refused to read {url!r}: {target} is outside the local root {root}")
    if not target.is_file():
        raise ImageFetchError(f"cannot read {url!r}: no such file {target}")
    if target.stat().st_size > access.max_bytes:
        raise ImageFetchError(f"refused to read {url!r}: larger than the limit of {access.max_bytes} bytes")
    return _check_image(repr(url), target.read_bytes())


def _check_image(where: str, data: bytes) -> bytes:
    if not any(data.startswith(signature) for signature in IMAGE_SIGNATURES):
        kinds = ", ".join(sorted(set(IMAGE_SIGNATURES.values())))
        raise ImageFetchError(f"{where} is not an image ({kinds}); it starts with {data[:16]!r}")
    return data


# -- authentication -------------------------------------------------------------------------

_access_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_access_tokens_lock = threading.Lock()


def _is_jwt(key: str) -> bool:
    return key.count(".") == 2


def _auth_headers(access: LabelStudioAccess) -> dict[str, str]:
    """``Authorization`` header for Label Studio, refreshing a personal access token if needed."""
    if not access.api_key:
        return {}
    if not _is_jwt(access.api_key):
        return {"Authorization": f"Token {access.api_key}"}
    return {"Authorization": f"Bearer {_access_token(access)}"}


def _access_token(access: LabelStudioAccess) -> str:
    key = (access.url, access.api_key)
    with _access_tokens_lock:
        token, expires = _access_tokens.get(key, ("", 0.0))
        if time.monotonic() < expires:
            return token
        refresh_url = urljoin(access.url.rstrip("/") + "/", "api/token/refresh/")
        failed = f"cannot refresh the personal access token at {refresh_url}"
        try:
            response = requests.post(refresh_url, json={"refresh": access.api_key},
                                     timeout=access.timeout_s, allow_redirects=False)
        except requests.RequestException as error:
            raise ImageFetchError(f"{failed}: {error}") from None
        if response.status_code != 200:
            raise ImageFetchError(f"{failed}: HTTP {response.status_code} {response.text[:200]}")
        try:
            token = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise ImageFetchError(f"{failed}: the answer has no access token") from None
        _access_tokens[key] = (token, time.monotonic() + ACCESS_TOKEN_TTL_S)
        return token


# -- write-back -----------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _sdk_client(url: str, api_key: str, timeout_s: float) -> LabelStudio:
    return LabelStudio(base_url=url, api_key=api_key, timeout=timeout_s)


def _sdk_call(failed: str, access: LabelStudioAccess, call):
    """``call(sdk client)``; Label Studio unknown, unreachable or refusing -> :class:`WriteBackError`
    starting with ``failed``."""
    if not access.url or not access.api_key:
        raise WriteBackError(f"{failed}: Label Studio's URL and API key are needed "
                             f"(LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)")
    try:
        return call(_sdk_client(access.url, access.api_key, access.timeout_s))
    except ApiError as error:
        raise WriteBackError(f"{failed} at {access.url}: HTTP {error.status_code} {str(error.body)[:200]}") from None
    except httpx.HTTPError as error:
        raise WriteBackError(f"{failed} at {access.url}: {error}") from None


def write_prediction(task_id: int, prediction: dict, access: LabelStudioAccess) -> int:
    """Store ``prediction`` (``{"result", "score", "model_version"}``) on task ``task_id`` in
    Label Studio (``POST /api/predictions``); returns the new prediction's id.

    Posted once: the SDK's own retries (after a lost answer, or a 5xx) are turned off, because
    Label Studio may have stored the prediction already; the caller retries after checking
    :func:`task_predictions`. Raises :class:`WriteBackError` when Label Studio is unknown,
    unreachable or refuses.
    """
    created = _sdk_call(f"cannot write the prediction of task {task_id} back", access,
                        lambda sdk: sdk.predictions.create(task=task_id, result=prediction["result"],
                                                           score=prediction.get("score"),
                                                           model_version=prediction.get("model_version"),
                                                           request_options={"max_retries": 0}))
    return int(created.id)


def task_predictions(task_id: int, access: LabelStudioAccess) -> list[dict]:
    """The predictions Label Studio holds for task ``task_id`` (``GET /api/predictions?task=ID``),
    as ``{"id", "result", "model_version"}`` dicts.

    Raises :class:`WriteBackError` when Label Studio is unknown, unreachable or refuses.
    """
    stored = _sdk_call(f"cannot list the predictions of task {task_id}", access,
                       lambda sdk: sdk.predictions.list(task=task_id))
    return [{"id": p.id, "result": p.result, "model_version": p.model_version} for p in stored]
