"""Images in cloud storage: task URLs that only Label Studio can turn into a download.

A task synced from a Label Studio 1.23 cloud source storage holds its object's URI
(``s3://bucket/key``, ``gs://bucket/key``, ``azure-blob://container/blob``), and the ML backend
receives it as it is. Label Studio's own frontend and SDK (``get_local_path``) read such an
object by asking Label Studio, with the API key::

    GET <Label Studio>/tasks/<task id>/presign/?fileuri=<URL-safe base64 of the URI>

Label Studio looks for the project's import storage that holds the URI and answers ``303 See
Other`` to a presigned URL on the storage host (storage ``presign`` on), or streams the bytes
itself (``presign`` off); 404 when no storage of the project holds it. samiam does the same:

* The URIs that count: :data:`CLOUD_SCHEMES` with a bucket (container) name and a key, at most
  :data:`MAX_URI_CHARS` characters, no control characters; the URI travels base64-encoded, so
  nothing in it can change the request.
* Label Studio's own storage paths, relative to its URL (:data:`STORAGE_PATH`:
  ``/storage-data/...``, ``/tasks/<id>/presign/?...``, ``/projects/<id>/resolve/?...``; no
  ``.`` or ``..`` segment), are fetched from Label Studio with the key, like ``/data/...`` paths.
* Both downloads go through :func:`samiam.labelstudio.fetch.download`: the key only to Label
  Studio's exact origin; its redirect parsed and checked like any URL, followed without the key
  and only to a storage host (``SAMIAM_STORAGE_HOSTS``) or an allowed image host
  (``SAMIAM_IMAGE_HOSTS``); one deadline, the size cap and the image check for the whole.
* Anything else is a plain image URL for :func:`samiam.labelstudio.fetch.fetch_image`.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote

from samiam.errors import ImageFetchError
from samiam.labelstudio.client import LabelStudioAccess
from samiam.labelstudio.fetch import download, fetch_image, label_studio_target
from samiam.labelstudio.urls import HttpUrl

CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
"""URI schemes of Label Studio's cloud import storages (S3 and S3-compatible, GCS, Azure Blob)."""

MAX_URI_CHARS = 4096
"""Longest cloud URI accepted (S3 keys have up to 1024 bytes, GCS names 1024)."""

STORAGE_PATH = re.compile(r"/storage-data/[^?#]*(\?[^#]*)?"
                          r"|/(tasks|projects)/[1-9][0-9]{0,18}/(presign|resolve)/\?[^#]*")
"""Label Studio paths that serve storage objects (its upload storage proxy, and the task- and
project-level presign/resolve endpoints with their query)."""

_CLOUD_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<bucket>[^/]*)/(?P<key>.*)", re.DOTALL)
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
"""Bucket / container names of S3 (legacy ones included), GCS and Azure: no ``@``, ``:`` or ``%``."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_cloud_uri(url: str) -> bool:
    """Whether ``url`` names an object of a cloud storage (``s3:``, ``gs:``, ``azure-blob:``),
    as Label Studio's SDK tells them (well formed or not)."""
    return url.lower().startswith(tuple(f"{scheme}:" for scheme in CLOUD_SCHEMES))


def presign_target(uri: str, task_id: int, access: LabelStudioAccess) -> HttpUrl:
    """The Label Studio URL that presigns cloud ``uri`` of task ``task_id``.

    Raises :class:`ImageFetchError` when ``uri`` is not a well-formed cloud URI or Label
    Studio's URL is unknown or refused.
    """
    _check_cloud_uri(uri)
    fileuri = base64.urlsafe_b64encode(uri.encode()).decode("ascii")
    return label_studio_target(f"/tasks/{task_id}/presign/?fileuri={fileuri}", access)


def _check_cloud_uri(uri: str) -> None:
    """Refuse ``uri`` (:class:`ImageFetchError` with the reason) unless it is
    ``<scheme>://<bucket>/<key>`` with a scheme of :data:`CLOUD_SCHEMES`."""
    if len(uri) > MAX_URI_CHARS:
        raise ImageFetchError(f"it is longer than {MAX_URI_CHARS} characters")
    if _CONTROL.search(uri):
        raise ImageFetchError("it contains a control character")
    match = _CLOUD_URI.fullmatch(uri)
    if match is None or match["scheme"] not in CLOUD_SCHEMES:
        raise ImageFetchError(f"it is not a cloud storage URI of the form "
                              f"{'|'.join(CLOUD_SCHEMES)}://bucket/key (lower-case scheme)")
    if not _BUCKET.fullmatch(match["bucket"]):
        raise ImageFetchError("its bucket is not a bucket or container name (letters, digits, '.', '-', '_')")
    if not match["key"]:
        raise ImageFetchError("it names no object after the bucket")


def fetch_task_image(url: str, task_id: int, access: LabelStudioAccess) -> bytes:
    """The bytes of task ``task_id``'s image ``url``: a cloud storage URI (through Label
    Studio's presign endpoint), a Label Studio storage path, or any URL
    :func:`~samiam.labelstudio.fetch.fetch_image` takes.

    Raises :class:`ImageFetchError` naming ``url`` and the reason.
    """
    if is_cloud_uri(url):
        try:
            target = presign_target(url, task_id, access)
        except ImageFetchError as error:
            raise ImageFetchError(f"refused to fetch {url!r}: {error}") from None
        return download(url, target, access)
    if STORAGE_PATH.fullmatch(url):
        try:
            _refuse_dot_segments(url)
            target = label_studio_target(url, access)
        except ImageFetchError as error:
            raise ImageFetchError(f"refused to fetch {url!r}: {error}") from None
        return download(url, target, access)
    return fetch_image(url, access)


def _refuse_dot_segments(path: str) -> None:
    """Refuse ``.`` and ``..`` segments (also percent-encoded): a proxy in front of Label Studio
    would resolve them and send the key-bearing request to another route."""
    if any(unquote(segment) in (".", "..") for segment in path.partition("?")[0].split("/")):
        raise ImageFetchError("its path has a '.' or '..' segment")
