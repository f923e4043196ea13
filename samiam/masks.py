"""Small, pure, vectorised helpers over mask stacks and label maps.

Conventions used across samiam:

* a *mask stack* is ``masks: (N, H, W) bool``; N may be 0;
* a *label map* is ``labels: (H, W) uint16`` with 0 = unsegmented and 1..K = materials;
* a *COCO RLE* is ``{"size": [H, W], "counts": [int, ...]}`` in column-major (Fortran) order,
  starting with a run of zeros, as pycocotools writes uncompressed RLE.
"""

from __future__ import annotations

import numpy as np

from samiam.errors import MaskSetError


def as_mask_stack(masks: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate and return ``masks`` as an ``(N, H, W) bool`` array (no copy when already bool).

    Raises :class:`MaskSetError` naming the problem when the array is not 3-D, is not
    boolean or 0/1 valued, or its ``(H, W)`` differs from ``shape``.
    """
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise MaskSetError(f"masks must have shape (N, H, W); got shape {masks.shape}")
    if shape is not None and masks.shape[1:] != tuple(shape):
        raise MaskSetError(f"masks are {masks.shape[1]}x{masks.shape[2]} (HxW) but the image is "
                           f"{shape[0]}x{shape[1]}")
    if masks.dtype != bool:
        if masks.dtype.kind not in "iuf" or not np.isin(masks, (0, 1)).all():
            raise MaskSetError(f"masks must be boolean or 0/1 valued; got dtype {masks.dtype}")
        masks = masks.astype(bool)
    return masks


def areas(masks: np.ndarray) -> np.ndarray:
    """Pixel count of each mask: ``(N, H, W) bool -> (N,) int64``."""
    return masks.sum(axis=(1, 2), dtype=np.int64)


def area_weighted_mean(masks: np.ndarray, values: np.ndarray) -> float:
    """Mean of ``values: (N,)`` weighted by the masks' areas (``masks: (N, H, W) bool``); 0 when
    every mask is empty."""
    sizes = areas(masks)
    total = sizes.sum()
    return float((np.asarray(values, np.float64) * sizes).sum() / total) if total else 0.0


def bounding_boxes(masks: np.ndarray) -> np.ndarray:
    """Bounding boxes ``(y0, x0, y1, x1)`` with exclusive ends: ``(N, H, W) bool -> (N, 4) int64``,
    all zeros for an empty mask."""
    y0, y1 = _extents(masks.any(axis=2))
    x0, x1 = _extents(masks.any(axis=1))
    return np.stack([y0, x0, y1, x1], axis=1)


def _extents(occupied: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, L) bool -> first True and one past the last True per row: two (N,) int64 (0, 0 if none)."""
    nonempty = occupied.any(axis=1)
    first = occupied.argmax(axis=1)
    end = occupied.shape[1] - occupied[:, ::-1].argmax(axis=1)
    return np.where(nonempty, first, 0).astype(np.int64), np.where(nonempty, end, 0).astype(np.int64)


def to_label_map(masks: np.ndarray) -> np.ndarray:
    """Paint a stack of (possibly overlapping) masks into a label map.

    Mask ``i`` gets label ``i + 1``. Where masks overlap, the smaller mask wins, so a child
    region stays visible inside its parent.

    masks: (N, H, W) bool, N < 65535 -> labels: (H, W) uint16.
    """
    n, h, w = masks.shape
    if n >= np.iinfo(np.uint16).max:
        raise MaskSetError(f"too many masks for a uint16 label map: {n}")
    labels = np.zeros((h, w), np.uint16)
    for i in np.argsort(-areas(masks), kind="stable"):
        labels[masks[i]] = i + 1
    return labels


def from_label_map(labels: np.ndarray, n_labels: int | None = None) -> np.ndarray:
    """Label map -> mask stack: ``(H, W) int -> (K, H, W) bool`` with mask k = (labels == k+1).

    ``n_labels`` defaults to ``labels.max()``; labels with no pixels give empty masks.
    """
    k = int(labels.max()) if n_labels is None else n_labels
    return labels[None] == np.arange(1, k + 1, dtype=labels.dtype)[:, None, None]


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a 2-D mask: ``(H, W) bool -> {"size": [H, W], "counts": [...]}``."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`: ``{"size": [H, W], "counts": [...]} -> (H, W) bool``."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise MaskSetError(f"RLE counts sum to {counts.sum()}, expected {h * w} for size {h}x{w}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape((h, w), order="F")
