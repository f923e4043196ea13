"""Label Studio access: where it is, its API key, and writing a prediction back.

The API key goes only to Label Studio's exact origin (scheme, host and port of
:attr:`LabelStudioAccess.url`, parsed as strictly as any task URL, see
:mod:`samiam.labelstudio.urls`).

Label Studio 1.23 accepts two kinds of API key: a legacy token (``Authorization: Token <key>``)
and a personal access token, a JWT *refresh* token exchanged at ``/api/token/refresh/`` for an
access token that lives 300 s (``Authorization: Bearer <access>``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus

import httpx
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from samiam.errors import ImageFetchError, WriteBackError
from samiam.labelstudio.transport import Deadline, exchange, read_body
from samiam.labelstudio.urls import HttpUrl, parse_http_url

ACCESS_TOKEN_TTL_S = 240.0
"""How long a refreshed access token is reused (Label Studio's live 300 s)."""

MAX_TOKEN_ANSWER_BYTES = 2**16

KEY_HINT = (" - check LABEL_STUDIO_API_KEY: Label Studio 1.23 disables legacy tokens by default, "
            "use a personal access token or enable legacy tokens for the organization")
"""Added to the reason of a 401 or 403 from Label Studio."""

_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]+")
"""What an API key or access token may hold to travel in an ``Authorization`` header."""


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
    """Limit of one whole download (every redirect and a token refresh included) or write-back."""
    storage_hosts: tuple[str, ...] = ()
    """Hosts (``host`` or ``host:port``) that Label Studio may redirect an image download to (its
    presigned cloud-storage URLs); they never get the API key."""


def status_text(code: int) -> str:
    """``HTTP 404 Not Found``, with the phrase from our own table (never the server's)."""
    try:
        return f"HTTP {code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"HTTP {code}"


def label_studio_url(access: LabelStudioAccess) -> HttpUrl:
    """``access.url`` in canonical parts (its path is Label Studio's base path, no query);
    :class:`ImageFetchError` when unset or refused."""
    if not access.url:
        raise ImageFetchError("Label Studio's URL is unknown (set LABEL_STUDIO_URL)")
    try:
        url = parse_http_url(access.url)
    except ImageFetchError as error:
        raise ImageFetchError(f"Label Studio's URL {access.url!r} (LABEL_STUDIO_URL or the hostname "
                              f"sent to /setup) is refused: {error}") from None
    if "?" in url.target:
        raise ImageFetchError(f"Label Studio's URL {access.url!r} must not have a query")
    return url.with_target(url.target.rstrip("/") + "/")


def _is_jwt(key: str) -> bool:
    return key.count(".") == 2


def auth_headers(access: LabelStudioAccess, deadline: Deadline) -> dict[str, str]:
    """``Authorization`` header for Label Studio, refreshing a personal access token if needed
    (within ``deadline``)."""
    if not access.api_key:
        return {}
    if not _TOKEN.fullmatch(access.api_key):
        raise ImageFetchError("the Label Studio API key has characters no API key has")
    if not _is_jwt(access.api_key):
        return {"Authorization": f"Token {access.api_key}"}
    return {"Authorization": f"Bearer {_access_token(access, deadline)}"}


_access_tokens: dict[tuple[str, str], tuple[str, float]] = {}
_access_tokens_lock = threading.Lock()


def _access_token(access: LabelStudioAccess, deadline: Deadline) -> str:
    key = (access.url, access.api_key)
    if not _access_tokens_lock.acquire(timeout=deadline.remaining()):
        raise deadline.exceeded()
    try:
        token, expires = _access_tokens.get(key, ("", 0.0))
        if time.monotonic() >= expires:
            token = _refresh(access, deadline)
            _access_tokens[key] = (token, time.monotonic() + ACCESS_TOKEN_TTL_S)
        return token
    finally:
        _access_tokens_lock.release()


def _refresh(access: LabelStudioAccess, deadline: Deadline) -> str:
    """A new access token for ``access.api_key`` (a refresh token) from Label Studio."""
    base = label_studio_url(access)
    refresh_url = base.with_target(base.target + "api/token/refresh/")
    failed = f"cannot refresh the personal access token at {refresh_url}"
    body = json.dumps({"refresh": access.api_key}).encode()
    try:
        with exchange("POST", refresh_url, {"Content-Type": "application/json"}, deadline, body) as response:
            if response.status != 200:
                hint = KEY_HINT if response.status in (401, 403) else ""
                raise ImageFetchError(f"{status_text(response.status)}{hint}")
            answer = read_body(response, MAX_TOKEN_ANSWER_BYTES, deadline)
    except ImageFetchError as error:
        raise ImageFetchError(f"{failed}: {error}") from None
    try:
        token = json.loads(answer)["access"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise ImageFetchError(f"{failed}: the answer holds no access token")
    return token


# -- write-back -----------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _sdk_client(base_url: str, api_key: str, timeout_s: float) -> LabelStudio:
    """An SDK client that talks to ``base_url`` only: no proxy or ``.netrc`` from the
    environment, no redirects followed."""
    session = httpx.Client(timeout=timeout_s, trust_env=False, follow_redirects=False)
    return LabelStudio(base_url=base_url, api_key=api_key, httpx_client=session)


def _sdk_call(failed: str, access: LabelStudioAccess, call):
    """``call(sdk client)`` against the canonical Label Studio URL; Label Studio unknown,
    unreachable or refusing -> :class:`WriteBackError` starting with ``failed``. The reason names
    the HTTP status, never what Label Studio answered."""
    if not access.url or not access.api_key:
        raise WriteBackError(f"{failed}: Label Studio's URL and API key are needed "
                             f"(LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY)")
    try:
        base = label_studio_url(access)
    except ImageFetchError as error:
        raise WriteBackError(f"{failed}: {error}") from None
    failed = f"{failed} at {base.scheme}://{base.host}:{base.port}"
    try:
        return call(_sdk_client(str(base).rstrip("/"), access.api_key, access.timeout_s))
    except ApiError as error:
        status = status_text(error.status_code) if error.status_code else "an API error"
        hint = KEY_HINT if error.status_code in (401, 403) else ""
        raise WriteBackError(f"{failed}: {status}{hint}") from None
    except httpx.ConnectError:
        raise WriteBackError(f"{failed}: cannot connect") from None
    except httpx.TimeoutException:
        raise WriteBackError(f"{failed}: no answer within {access.timeout_s:g} s") from None
    except httpx.HTTPError as error:
        raise WriteBackError(f"{failed}: {type(error).__name__}") from None
    except ValueError:
        raise WriteBackError(f"{failed}: Label Studio's answer is not JSON") from None


def write_prediction(task_id: int, prediction: dict, access: LabelStudioAccess, project: int | None = None) -> int:
    """Store ``prediction`` (``{"result", "score", "model_version"}``) on task ``task_id`` of
    ``project`` in Label Studio (``POST /api/predictions``); returns the new prediction's id.
    Without ``project`` Label Studio 1.23 finds it from the task but logs "project_id is not set
    for prediction" for every write-back.

    Posted once: the SDK's own retries (after a lost answer, or a 5xx) are turned off, because
    Label Studio may have stored the prediction already; the caller retries after checking
    :func:`task_predictions`. Raises :class:`WriteBackError` when Label Studio is unknown,
    unreachable or refuses.
    """
    in_project = {"project": project} if project is not None else {}
    created = _sdk_call(f"cannot write the prediction of task {task_id} back", access,
                        lambda sdk: sdk.predictions.create(task=task_id, result=prediction["result"],
                                                           score=prediction.get("score"),
                                                           model_version=prediction.get("model_version"),
                                                           request_options={"max_retries": 0}, **in_project))
    return int(created.id)


def task_predictions(task_id: int, access: LabelStudioAccess) -> list[dict]:
    """The predictions Label Studio holds for task ``task_id`` (``GET /api/predictions?task=ID``),
    as ``{"id", "result", "model_version"}`` dicts.

    Raises :class:`WriteBackError` when Label Studio is unknown, unreachable or refuses.
    """
    stored = _sdk_call(f"cannot list the predictions of task {task_id}", access,
                       lambda sdk: sdk.predictions.list(task=task_id))
    return [{"id": p.id, "result": p.result, "model_version": p.model_version} for p in stored]


def project_label_config(project: int, access: LabelStudioAccess) -> str:
    """Project ``project``'s labeling config as Label Studio holds it (``GET /api/projects/{id}/``).

    Raises :class:`WriteBackError` when Label Studio is unknown, unreachable or refuses.
    """
    stored = _sdk_call(f"cannot read project {project}", access, lambda sdk: sdk.projects.get(id=project))
    return stored.label_config


def read_annotation(annotation_id: int, access: LabelStudioAccess) -> dict:
    """Label Studio's own copy of annotation ``annotation_id`` (``GET /api/annotations/{id}/``):
    ``{"id", "task", "project", "result", "updated_at", "was_cancelled", ...}``. (Not its task:
    ``GET /api/tasks/{id}/`` makes Label Studio ask the ML backend for a prediction of a task
    without one, which a worker waiting for the answer cannot give.)

    Raises :class:`WriteBackError` when Label Studio is unknown, unreachable or refuses (404 for
    an annotation it does not hold).
    """
    return _sdk_call(f"cannot read annotation {annotation_id}", access,
                     lambda sdk: sdk.annotations.get(id=annotation_id)).dict()


PAGE_SIZE = 100
"""Tasks per page when a project's annotated tasks are listed."""


def project_annotations(project: int, access: LabelStudioAccess) -> list[tuple[dict, dict]]:
    """Every annotation of project ``project`` that was not cancelled, with its task, as
    ``(task {"id", "data"}, annotation {"id", "result", "updated_at", ...})`` pairs: the
    annotated tasks page by page (``GET /api/tasks/?project=P&only_annotated=true``), then each
    one's annotations (``GET /api/tasks/{id}/annotations/``).

    Raises :class:`WriteBackError` when Label Studio is unknown, unreachable or refuses.
    """
    failed = f"cannot read the annotations of project {project}"

    def page(number: int):
        return _sdk_call(failed, access, lambda sdk: sdk.tasks.list(
            project=project, page=number, page_size=PAGE_SIZE, only_annotated=True, fields="task_only"))

    first = page(1)
    tasks = list(first.items or [])
    for number in range(2, -(-int(first.response.total) // PAGE_SIZE) + 1):
        tasks += page(number).items or []
    pairs = []
    for task in tasks:
        stored = _sdk_call(failed, access, lambda sdk, task_id=task.id: sdk.annotations.list(id=task_id))
        pairs += [({"id": task.id, "data": task.data}, annotation.dict()) for annotation in stored
                  if not annotation.was_cancelled]
    return pairs
