"""Label Studio tasks for imported micrographs, and which URL of a task samiam segments.

A task ``samiam import`` makes::

    {"data": {"image": URL of NAME.png (8-bit view, shown and annotated),
              "original": URL of NAME.tif (full-range float32, segmented by the backend),
              "source": the microscope file it came from, "signal": the signal / frame taken,
              "pixel_size": 0.2485, "pixel_unit": "nm",
              "width": 1024, "height": 768}}   # NAME.png's size in pixels

The backend segments ``original`` only when the task declares ``width`` and ``height`` (the
shown PNG's size), and fails the task with :class:`ImageSizeMismatchError` when the original
decodes to another size: masks are made on the original and drawn on the PNG, so they must match
it pixel for pixel. A task with an ``original`` but no declared size is segmented from the shown
image itself (the PNG; masks then match it by construction): its original's size cannot be
checked without a second download of the PNG.

URLs are ``--url-prefix`` + the file's path relative to the output folder, or by default
Label Studio's local-files form ``/data/local-files/?d=<path relative to the document root>``
(Label Studio serves it when ``LOCAL_FILES_SERVING_ENABLED=true``, its
``LOCAL_FILES_DOCUMENT_ROOT`` is that document root, and a local storage covers the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from samiam.errors import RequestError, SamiamError

ORIGINAL_KEY = "original"
"""Task data key naming the full-range image the backend segments instead of the shown one."""

SIZE_KEYS = ("height", "width")
"""Task data keys declaring the shown image's size in pixels."""

MAX_SIDE = 2**20
"""Largest declared side in pixels (far beyond any image samiam accepts)."""

LOCAL_FILES_PREFIX = "/data/local-files/?d="


def declared_size(task: dict) -> tuple[int, int] | None:
    """(height, width) of the shown image as the task declares it, or None when it declares
    neither. Raises :class:`RequestError` for one without the other or a value that is not a
    whole number of pixels (1 to :data:`MAX_SIDE`)."""
    data = task.get("data") or {}
    values = [data.get(key) for key in SIZE_KEYS]
    if values == [None, None]:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in values):
        raise RequestError(f"task {task.get('id')}: data 'height' and 'width' must both be whole numbers of "
                           f"pixels (1 to {MAX_SIDE}), the shown image's size; got {values!r:.80}")
    return values[0], values[1]


def segmentation_url(task: dict, value_key: str) -> tuple[Any, tuple[int, int] | None]:
    """What the backend fetches to segment ``task``, and the (height, width) it must decode to:
    ``data["original"]`` and the declared size when the task has both (a task from ``samiam
    import``), else the shown image ``data[value_key]`` and None (no check needed).

    The URL is untrusted and goes through the same fetch rules; the caller checks its type.
    Raises :class:`RequestError` for a task with an original and a malformed declared size.
    """
    data = task.get("data") or {}
    original = data.get(ORIGINAL_KEY)
    size = declared_size(task) if isinstance(original, str) and original else None
    if size is not None:
        return original, size
    return data.get(value_key), None


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


def import_task(image_url: str, original_url: str, size: tuple[int, int], source: str, signal: str | None,
                pixel_size: float | None, pixel_unit: str | None) -> dict:
    """One task as Label Studio imports it (``[{"data": {...}}, ...]`` is a valid tasks.json);
    ``size``: the shown image's (height, width)."""
    return {"data": {"image": image_url, ORIGINAL_KEY: original_url, "source": source, "signal": signal,
                     "pixel_size": pixel_size, "pixel_unit": pixel_unit, **dict(zip(SIZE_KEYS, size))}}
