"""Label Studio tasks for imported micrographs, and which URL of a task samiam segments.

A task ``samiam import`` makes::

    {"data": {"image": URL of NAME.png (8-bit view, shown and annotated),
              "original": URL of NAME.tif (full-range float32, segmented by the backend),
              "source": the microscope file it came from, "signal": the signal / frame taken,
              "pixel_size": 0.2485, "pixel_unit": "nm"}}

URLs are ``--url-prefix`` + the file's path relative to the output folder, or by default
Label Studio's local-files form ``/data/local-files/?d=<path relative to the document root>``
(Label Studio serves it when ``LOCAL_FILES_SERVING_ENABLED=true``, its
``LOCAL_FILES_DOCUMENT_ROOT`` is that document root, and a local storage covers the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from samiam.errors import SamiamError

ORIGINAL_KEY = "original"
"""Task data key naming the full-range image the backend segments instead of the shown one."""

LOCAL_FILES_PREFIX = "/data/local-files/?d="


def segmentation_url(task: dict, value_key: str) -> Any:
    """The URL the backend fetches to segment ``task``: ``data["original"]`` when the task has
    one (a task from ``samiam import``), else the shown image ``data[value_key]``.

    Either is untrusted and goes through the same fetch rules; the caller checks the type.
    """
    data = task.get("data") or {}
    original = data.get(ORIGINAL_KEY)
    return original if isinstance(original, str) and original else data.get(value_key)


def url_base(out_dir: Path, url_prefix: str | None, document_root: Path) -> str:
    """What the URL of a file in ``out_dir`` starts with (see the module docstring); the file's
    name, URL-quoted, follows.

    Raises :class:`SamiamError` when no prefix is given and ``out_dir`` is not under
    ``document_root``.
    """
    if url_prefix is not None:
        return url_prefix
    root = document_root.resolve()
    try:
        relative = out_dir.resolve().relative_to(root)
    except ValueError:
        raise SamiamError(f"{out_dir} is not inside the document root {root}: Label Studio serves local files "
                          f"only below its LOCAL_FILES_DOCUMENT_ROOT; give --document-root or --url-prefix")
    return LOCAL_FILES_PREFIX + "".join(f"{quote(part)}/" for part in relative.parts)


def import_task(image_url: str, original_url: str, source: str, signal: str | None,
                pixel_size: float | None, pixel_unit: str | None) -> dict:
    """One task as Label Studio imports it (``[{"data": {...}}, ...]`` is a valid tasks.json)."""
    return {"data": {"image": image_url, ORIGINAL_KEY: original_url, "source": source, "signal": signal,
                     "pixel_size": pixel_size, "pixel_unit": pixel_unit}}
