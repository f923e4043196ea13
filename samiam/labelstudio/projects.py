"""Set up a Label Studio project for imported micrographs (``samiam import --label-studio``).

Every call goes to the one Label Studio origin given, with its API key, through
label-studio-sdk's public client, except the multipart file upload, which the SDK does not
cover. What Label Studio 1.23.2 does with each call (``shared/notes``):

* ``POST /api/projects`` creates the project with a BrushLabels config;
* images reach it one of two ways: a *local-files storage* covering the output folder (when
  Label Studio and samiam share it; Label Studio then serves ``/data/local-files/?d=...``) and
  a JSON import of the tasks, which keeps every task field (pixel size, the full-range
  original); or a multipart *upload* of the PNGs, one form field name per file (files sharing
  a field name make one task), which makes tasks holding only ``data.image``;
* ``POST /api/ml`` connects the backend (Label Studio checks its /health and /setup);
* ``POST /api/dm/actions?id=retrieve_tasks_predictions`` asks it for predictions of all tasks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import requests
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from samiam.errors import LabelStudioError
from samiam.labelstudio.client import LabelStudioAccess, auth_headers
from samiam.labelstudio.transport import Deadline

UPLOAD_BATCH = 20
"""Files per multipart upload request."""

STORAGE_NOTHING = "(?!)"
"""Regex filter of the local storage: it only grants access to the folder; a sync must not add
tasks without samiam's fields (the tasks come from the JSON import)."""


@contextmanager
def _calling(what: str, access: LabelStudioAccess) -> Iterator[None]:
    try:
        yield
    except ApiError as error:
        raise LabelStudioError(f"Label Studio at {access.url} refused to {what}: "
                               f"HTTP {error.status_code} {str(error.body)[:300]}") from None
    except (httpx.HTTPError, requests.RequestException) as error:
        raise LabelStudioError(f"cannot reach Label Studio at {access.url} to {what}: {error}") from None


def _client(access: LabelStudioAccess) -> LabelStudio:
    if not access.url or not access.api_key:
        raise LabelStudioError("Label Studio's URL and API key are needed (--label-studio URL and the "
                               "environment variable LABEL_STUDIO_API_KEY)")
    return LabelStudio(base_url=access.url, api_key=access.api_key, timeout=access.timeout_s)


def create_project(access: LabelStudioAccess, title: str, label_config: str) -> int:
    """Create a project; returns its id."""
    with _calling(f"create the project {title!r}", access):
        return int(_client(access).projects.create(title=title, label_config=label_config).id)


def link_local_folder(access: LabelStudioAccess, project: int, folder: Path) -> int:
    """Add a local-files storage covering ``folder`` (as Label Studio's host sees it) to
    ``project`` so that Label Studio serves its files; returns the storage id. Not synced."""
    with _calling(f"add a local-files storage for {folder}", access):
        return int(_client(access).import_storage.local.create(
            project=project, path=str(folder), regex_filter=STORAGE_NOTHING, use_blob_urls=True,
            title="samiam import").id)


def import_tasks(access: LabelStudioAccess, project: int, tasks: Sequence[dict]) -> int:
    """Import ``tasks`` (``[{"data": {...}}]``) as they are; returns the number created."""
    with _calling(f"import {len(tasks)} tasks into project {project}", access):
        answer = _client(access).projects.import_tasks(id=project, request=list(tasks))
    return int(answer.task_count or 0)


def upload_images(access: LabelStudioAccess, project: int, paths: Sequence[Path]) -> int:
    """Upload image files, one task each; returns the number of tasks created."""
    _client(access)  # checks that URL and key are given
    created = 0
    url = f"{access.url.rstrip('/')}/api/projects/{project}/import"
    for start in range(0, len(paths), UPLOAD_BATCH):
        batch = paths[start:start + UPLOAD_BATCH]
        files = {f"file{start + i}": (path.name, path.read_bytes(), "image/png") for i, path in enumerate(batch)}
        what = f"take the upload of {len(batch)} images into project {project}"
        with _calling(what, access):
            response = requests.post(url, headers=auth_headers(access, Deadline(access.timeout_s)), files=files, timeout=access.timeout_s,
                                     allow_redirects=False)
        if response.status_code != 201:
            raise LabelStudioError(f"Label Studio at {access.url} refused to {what}: HTTP {response.status_code} "
                                   f"{response.text[:300]}")
        created += int(response.json().get("task_count", 0))
    return created


def connect_backend(access: LabelStudioAccess, project: int, backend_url: str, title: str = "samiam",
                    interactive: bool = False) -> int:
    """Connect the ML backend at ``backend_url`` to ``project`` (``interactive``: it also answers
    the smart tools' clicks); returns the ML backend id."""
    with _calling(f"connect the ML backend {backend_url} (it must answer /health and /setup)", access):
        return int(_client(access).ml.create(project=project, url=backend_url, title=title,
                                             is_interactive=interactive).id)


def request_predictions(access: LabelStudioAccess, project: int) -> None:
    """Ask Label Studio to fetch the backend's predictions for every task of ``project``.

    Label Studio answers 200 even when nothing was stored: the predictions themselves show in
    the project (or ``GET /api/predictions?task=ID``).
    """
    with _calling(f"request predictions for project {project}", access):
        _client(access).actions.create(id="retrieve_tasks_predictions", project=project,
                                       selected_items={"all": True, "excluded": []})
