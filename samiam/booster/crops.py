"""Square crops inside masks: the windows through which the texture embedder looks at a mask.

The paper's authors cut the image into a grid of square chips and give a mask those chips that lie
at least 90 % inside it, then draw up to 10 of them at random. :func:`sample_crops` does the same on
a denser grid: candidate crops of side ``S`` start every ``S // 2`` px (rows and columns
``0, S//2, 2*(S//2), ...`` while the crop fits in the image). The coverage of every candidate by
every mask is computed at once from integral images evaluated only at the grid lines (block sums
with :func:`numpy.add.reduceat`), so the cost is one pass over the mask stack.

Masks too thin or too small for any grid crop can still be looked at through
:func:`interior_boxes`: one crop centred on the mask's most interior pixel;
:func:`interior_crops`: squares inside a small mask around that pixel (and, along a thin strip,
around further deep pixels), scaled to the crop side.

:func:`crop_grid` keeps *every* qualifying candidate instead of a sample, and marks which candidates
lie near each mask (a dilation on the coarse grid of the candidates that touch it): the crops on
either side of the place where two masks meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from samiam import masks as masklib


@dataclass(frozen=True)
class CropSample:
    """Crops drawn from a mask stack.

    boxes: (M, 4) int64, one crop per row as (y0, x0, y1, x1), half-open, all of the same side.
    owner: (M,) int64, index of the mask each crop was drawn for (a box may appear for several masks).
    """

    boxes: np.ndarray
    owner: np.ndarray

    def counts(self, n_masks: int) -> np.ndarray:
        """Number of crops of each mask: ``(n_masks,) int64``."""
        return np.bincount(self.owner, minlength=n_masks).astype(np.int64)


@dataclass(frozen=True)
class CropGrid:
    """Every grid candidate that lies enough inside at least one mask.

    boxes: (C, 4) int64, (y0, x0, y1, x1) of each such candidate, row-major over the grid.
    owned: (N, C) bool, the candidate lies at least the asked fraction inside mask n.
    near: (N, C) bool, the candidate is at most ``reach`` grid steps (in rows and in columns)
        from a candidate that overlaps mask n by at least one pixel.
    """

    boxes: np.ndarray
    owned: np.ndarray
    near: np.ndarray


def grid_origins(length: int, crop_size: int) -> np.ndarray:
    """Start coordinates of the candidate crops along one axis: ``(n,) int64``, stride ``crop_size // 2``."""
    return np.arange(0, length - crop_size + 1, max(crop_size // 2, 1), dtype=np.int64)


def grid_coverage(masks: np.ndarray, crop_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of every candidate crop that lie inside every mask.

    masks: (N, H, W) bool. Returns ``ys: (ny,) int64`` and ``xs: (nx,) int64`` (crop origins) and
    ``inside: (N, ny, nx) int64``, the number of pixels of crop (ys[i], xs[j]) inside mask n.
    """
    import cv2

    n, h, w = masks.shape
    ys, xs = grid_origins(h, crop_size), grid_origins(w, crop_size)
    inside = np.zeros((n, len(ys), len(xs)), np.int64)
    if len(ys) == 0 or len(xs) == 0:
        return ys, xs, inside
    y0, y1, x0, x1 = ys[:, None], ys[:, None] + crop_size, xs[None, :], xs[None, :] + crop_size
    for k, mask in enumerate(masks):
        integral = cv2.integral(np.ascontiguousarray(mask).view(np.uint8))  # (H+1, W+1) int32
        inside[k] = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return ys, xs, inside


def sample_crops(masks: np.ndarray, crop_size: int, per_mask: int, inside: float,
                 rng: np.random.Generator) -> CropSample:
    """Draw up to ``per_mask`` grid crops per mask, each at least ``inside`` (a fraction) in its mask.

    masks: (N, H, W) bool; crop_size: side S in px; rng: the only source of randomness, so a
    generator seeded the same way gives the same sample. Crops are drawn without replacement,
    uniformly among the mask's qualifying candidates; a mask with fewer qualifying candidates
    gets all of them, a mask with none (smaller or thinner than a crop) gets none.
    """
    n = len(masks)
    ys, xs, covered = grid_coverage(masks, crop_size)
    covered = covered.reshape(n, len(ys) * len(xs))
    qualifies = covered >= inside * crop_size * crop_size
    keys = rng.random(covered.shape)
    keys[~qualifies] = np.inf
    order = np.argsort(keys, axis=1, kind="stable")[:, :per_mask]
    chosen = np.take_along_axis(qualifies, order, axis=1)
    owner = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], order.shape)[chosen]
    candidate = order[chosen]
    row, col = np.divmod(candidate, max(len(xs), 1))
    y0, x0 = ys[row], xs[col]
    boxes = np.stack([y0, x0, y0 + crop_size, x0 + crop_size], axis=1).astype(np.int64)
    return CropSample(boxes=boxes.reshape(-1, 4), owner=owner.astype(np.int64))


def crop_grid(masks: np.ndarray, crop_size: int, inside: float, reach: int) -> CropGrid:
    """All grid candidates of side ``crop_size`` lying at least ``inside`` (a fraction) in some mask
    of ``masks: (N, H, W) bool``, which masks own them and which masks they lie within ``reach``
    grid steps (of ``crop_size // 2`` px) of; see :class:`CropGrid`."""
    n = len(masks)
    ys, xs, covered = grid_coverage(masks, crop_size)
    owned = covered >= inside * crop_size * crop_size
    near = ndimage.maximum_filter(covered > 0, size=(1, 2 * reach + 1, 2 * reach + 1), mode="constant")
    keep = owned.any(axis=0)
    row, col = np.nonzero(keep)
    y0, x0 = ys[row], xs[col]
    boxes = np.stack([y0, x0, y0 + crop_size, x0 + crop_size], axis=1).astype(np.int64)
    return CropGrid(boxes=boxes.reshape(-1, 4), owned=owned[:, keep].reshape(n, -1),
                    near=near[:, keep].reshape(n, -1))


def interior_boxes(masks: np.ndarray, crop_size: int) -> np.ndarray:
    """One crop per mask, centred on the mask's most interior pixel (the maximum of its distance
    transform), shifted to lie inside the image.

    masks: (N, H, W) bool, each non-empty -> boxes: (N, 4) int64 as (y0, x0, y1, x1).
    """
    n, h, w = masks.shape
    centres, _ = interior_points(masks)
    boxes = np.zeros((n, 4), np.int64)
    for i, (cy, cx) in enumerate(centres):
        y0 = np.clip(cy - crop_size // 2, 0, h - crop_size)
        x0 = np.clip(cx - crop_size // 2, 0, w - crop_size)
        boxes[i] = (y0, x0, y0 + crop_size, x0 + crop_size)
    return boxes


INTERIOR_DEPTH_SHARE = 0.75
"""Besides its most interior pixel, a mask is looked at around pixels at least this share as deep."""


def interior_crops(grey: np.ndarray, masks: np.ndarray, crop_size: int,
                   per_mask: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops of what lies inside each mask: the largest squares that fit in it (side about
    sqrt(2) x the distance to its edge, at least 2 px, at most ``crop_size``) around its most
    interior pixel and, up to ``per_mask`` in all, around further pixels at least
    :data:`INTERIOR_DEPTH_SHARE` as deep whose squares do not overlap the ones taken (a compact
    particle gets one, a long thin strip one every width along its length), each scaled
    (bilinear) to ``crop_size``.

    grey: (H, W) float; masks: (N, H, W) bool, each non-empty -> crops (M, crop_size, crop_size)
    float32 and their masks' indices (M,) int64.
    """
    h, w = masks.shape[1:]
    crops, owner = [], []
    for i, (top, left, depth) in enumerate(_depth_maps(masks)):
        for cy, cx, d in _interior_spots(depth, per_mask):
            inner = int(np.clip(np.floor(np.sqrt(2.0) * d), 2, min(crop_size, h, w)))
            y0 = int(np.clip(top + cy - inner // 2, 0, h - inner))
            x0 = int(np.clip(left + cx - inner // 2, 0, w - inner))
            patch = np.asarray(grey[y0:y0 + inner, x0:x0 + inner], np.float32)
            crops.append(ndimage.zoom(patch, crop_size / inner, order=1, mode="nearest",
                                      grid_mode=True)[:crop_size, :crop_size])
            owner.append(i)
    return (np.asarray(crops, np.float32).reshape(-1, crop_size, crop_size), np.asarray(owner, np.int64))


def _interior_spots(depth: np.ndarray, count: int) -> list[tuple[int, int, float]]:
    """Up to ``count`` (y, x, depth) of ``depth: (h, w)`` (a distance transform): the deepest
    pixel, then the deepest of those at least :data:`INTERIOR_DEPTH_SHARE` as deep that lie
    farther than twice their depth from every pixel taken before (squares that do not overlap)."""
    deepest = float(depth.max())
    ys, xs = np.nonzero(depth >= INTERIOR_DEPTH_SHARE * deepest)
    order = np.argsort(-depth[ys, xs], kind="stable")
    taken: list[tuple[int, int, float]] = []
    for y, x in zip(ys[order], xs[order]):
        d = float(depth[y, x])
        if all((y - ty) ** 2 + (x - tx) ** 2 > (d + td) ** 2 for ty, tx, td in taken):
            taken.append((int(y), int(x), d))
            if len(taken) == count:
                break
    return taken


def interior_points(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most interior pixel of each mask (the maximum of its distance transform) and its distance
    to the mask's edge: masks (N, H, W) bool, each non-empty -> ``(N, 2) int64`` (y, x) and
    ``(N,) float64`` (:func:`_depth_maps`)."""
    n = len(masks)
    centres, depths = np.zeros((n, 2), np.int64), np.zeros(n)
    for i, (top, left, depth) in enumerate(_depth_maps(masks)):
        cy, cx = np.unravel_index(np.argmax(depth), depth.shape)
        centres[i] = (top + cy, left + cx)
        depths[i] = depth[cy, cx]
    return centres, depths


def _depth_maps(masks: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
    """For each of ``masks: (N, H, W)`` bool, each non-empty: the top and left of its bounding box
    and, over that box ``(h, w) float64``, each pixel's distance to the nearest one outside the
    mask (the transform runs with a one-pixel margin, so the box's edges count as outside)."""
    for mask, (top, left, bottom, right) in zip(masks, masklib.bounding_boxes(masks)):
        yield top, left, ndimage.distance_transform_edt(np.pad(mask[top:bottom, left:right], 1))[1:-1, 1:-1]


def cut_crops(grey: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Cut the crops ``boxes: (M, 4) int (y0, x0, y1, x1)``, all of one side S, out of
    ``grey: (H, W) float`` -> ``(M, S, S) float32`` (a copy)."""
    if len(boxes) == 0:
        return np.zeros((0, 0, 0), np.float32)
    side = int(boxes[0, 2] - boxes[0, 0])
    windows = sliding_window_view(np.asarray(grey, np.float32), (side, side))
    return np.ascontiguousarray(windows[boxes[:, 0], boxes[:, 1]])
