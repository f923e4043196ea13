"""Proposals for large images, per overlapping tile, with masks merged across the tile seams.

SAM sees its input shrunk to 1024 px, so an 8192 px micrograph loses 8x its resolution. Here the
image is cut into ``tile_size`` tiles that overlap by at least ``tile_overlap`` px
(:func:`tile_boxes`), any :class:`~samiam.proposals.base.Proposer` runs on each tile, the
booster's removal rules drop each tile's islands, tiny children and duplicates
(:func:`remove_per_tile`), and masks are kept compactly, as their bounding box and the crop of
the mask inside it (:class:`BoxMasks`), never as full-image copies. Two masks of neighbouring
tiles are the same region when their parts inside the two tiles' overlap (both tiles see all of
it) have an IoU of at least ``seam_iou``; each mask is matched with at most one mask of the
other tile (best IoU first), so a region and its child, or two regions touching at the seam,
stay apart. Matched
masks, transitively (a corner where four tiles meet), become one mask: the union of their parts
(:func:`merge_across_seams`). Only the merged set is painted into a full-resolution stack, once.

>>> tile_boxes((1900, 1000), tile=1024, overlap=128)
array([[   0,    0, 1024, 1000],
       [ 876,    0, 1900, 1000]])
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from samiam import masks as masklib
from samiam.booster.removal import remove_masks
from samiam.errors import SettingsError
from samiam.io import Micrograph
from samiam.proposals.base import Proposals, Proposer
from samiam.settings import ProposalSettings, RemovalSettings, Settings

log = logging.getLogger(__name__)

TILING_MODES = ("auto", "on", "off")
UNTILED_PROPOSERS = ("classical",)
"""Proposers that ``tiling="auto"`` never tiles (they model the whole image at once)."""


@dataclass(frozen=True)
class BoxMasks:
    """Masks of an image of ``shape`` (H, W) stored as bounding-box crops.

    boxes: (M, 4) int64, ``(y0, x0, y1, x1)`` in image px, exclusive ends.
    crops: M arrays, crop i is ``(y1 - y0, x1 - x0) bool``: the mask inside box i.
    scores: (M,) float32.
    """

    shape: tuple[int, int]
    boxes: np.ndarray
    crops: tuple[np.ndarray, ...]
    scores: np.ndarray

    @classmethod
    def from_stack(cls, masks: np.ndarray, scores: np.ndarray, origin: tuple[int, int],
                   shape: tuple[int, int]) -> BoxMasks:
        """``masks: (N, h, w) bool`` of a window at ``origin`` (y, x) of an image of ``shape``;
        empty masks are dropped."""
        boxes = masklib.bounding_boxes(masks)
        keep = np.flatnonzero(boxes[:, 2] > boxes[:, 0])
        crops = tuple(masks[i, y0:y1, x0:x1].copy() for i, (y0, x0, y1, x1) in zip(keep, boxes[keep]))
        offset = np.array([origin[0], origin[1], origin[0], origin[1]], np.int64)
        return cls(tuple(shape), (boxes[keep] + offset).reshape(-1, 4), crops,
                   np.asarray(scores, np.float32)[keep])

    def __len__(self) -> int:
        return len(self.crops)

    def part(self, i: int, window: np.ndarray) -> np.ndarray:
        """Mask i inside ``window`` ``(y0, x0, y1, x1)``: ``(y1 - y0, x1 - x0) bool``."""
        out = np.zeros((window[2] - window[0], window[3] - window[1]), bool)
        y0, x0, y1, x1 = self.boxes[i]
        top, left = max(y0, window[0]), max(x0, window[1])
        bottom, right = min(y1, window[2]), min(x1, window[3])
        if bottom > top and right > left:
            out[top - window[0]:bottom - window[0], left - window[1]:right - window[1]] = \
                self.crops[i][top - y0:bottom - y0, left - x0:right - x0]
        return out

    def areas(self) -> np.ndarray:
        """(M,) int64 pixel counts."""
        return np.array([crop.sum() for crop in self.crops], np.int64)

    def to_stack(self) -> np.ndarray:
        """All masks as ``(M, H, W) bool`` (the one full-resolution copy)."""
        stack = np.zeros((len(self), *self.shape), bool)
        for i, (y0, x0, y1, x1) in enumerate(self.boxes):
            stack[i, y0:y1, x0:x1] = self.crops[i]
        return stack


def check_tiling(settings: ProposalSettings) -> None:
    """Raise :class:`SettingsError` for a tiling mode, tile size, overlap or seam IoU out of range."""
    if settings.tiling not in TILING_MODES:
        raise SettingsError(f"proposals.tiling {settings.tiling!r}; use {', '.join(map(repr, TILING_MODES))}")
    if settings.tile_size < 64:
        raise SettingsError(f"proposals.tile_size={settings.tile_size} px is below 64")
    if not 0 <= settings.tile_overlap <= settings.tile_size // 2:
        raise SettingsError(f"proposals.tile_overlap={settings.tile_overlap} must be between 0 and half "
                            f"the tile size ({settings.tile_size // 2})")
    if not 0 < settings.seam_iou <= 1:
        raise SettingsError(f"proposals.seam_iou={settings.seam_iou} must be in (0, 1]")


def uses_tiles(proposer: Proposer, shape: tuple[int, int], settings: ProposalSettings) -> bool:
    """Whether :func:`propose` tiles an image of ``shape`` (H, W) for ``proposer``."""
    check_tiling(settings)
    larger = max(shape) > settings.tile_size
    if settings.tiling == "auto":
        return larger and proposer.name not in UNTILED_PROPOSERS
    return settings.tiling == "on" and larger


def propose(proposer: Proposer, micrograph: Micrograph, settings: Settings) -> Proposals:
    """``proposer``'s masks of ``micrograph``, per tile when :func:`uses_tiles` says so.

    Each tile's masks first go through the booster's removal rules (:func:`remove_per_tile`), so
    that the islands, tiny children and duplicates of every tile never reach the full-resolution
    stack. Returns :class:`Proposals` of ``micrograph.shape``.
    """
    tiling = settings.proposals
    if not uses_tiles(proposer, micrograph.shape, tiling):
        return proposer.propose(micrograph)
    boxes = tile_boxes(micrograph.shape, tiling.tile_size, tiling.tile_overlap)
    tiles = (crop_micrograph(micrograph, box) for box in boxes)
    per_tile = (remove_per_tile(proposer.propose(tile), tile.grey, settings.removal) for tile in tiles)
    merged = merge_across_seams(micrograph.shape, boxes, per_tile, tiling.seam_iou)
    log.info("%s: %d tiles of %d px -> %d proposals", micrograph.name, len(boxes), tiling.tile_size,
             len(merged))
    return Proposals(merged.to_stack(), merged.scores)


def remove_per_tile(proposals: Proposals, grey: np.ndarray, settings: RemovalSettings) -> Proposals:
    """A tile's proposals without those the booster's removal rules drop (Algorithm 1 and the
    population rule), judged in the tile ``grey: (h, w)``, which is the image SAM saw (sizes scale
    to the tile as to a whole image)."""
    keep = remove_masks(proposals.masks, grey, settings).keep
    return Proposals(proposals.masks[keep], proposals.scores[keep])


def tile_starts(length: int, tile: int, overlap: int) -> np.ndarray:
    """Start of each tile along one axis of ``length`` px: (T,) int64, evenly spread from 0 to
    ``length - tile`` so that neighbours overlap by at least ``overlap`` (one tile when it fits)."""
    if length <= tile:
        return np.zeros(1, np.int64)
    count = int(np.ceil((length - overlap) / (tile - overlap)))
    return np.round(np.linspace(0, length - tile, count)).astype(np.int64)


def tile_boxes(shape: tuple[int, int], tile: int, overlap: int) -> np.ndarray:
    """Tiles covering an image of ``shape`` (H, W): ``(T, 4) int64`` ``(y0, x0, y1, x1)``, row by row."""
    rows, cols = (tile_starts(length, tile, overlap) for length in shape)
    y0, x0 = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    return np.stack([y0, x0, np.minimum(y0 + tile, shape[0]), np.minimum(x0 + tile, shape[1])], axis=1)


def crop_micrograph(micrograph: Micrograph, box: np.ndarray) -> Micrograph:
    """The part of ``micrograph`` inside ``box`` ``(y0, x0, y1, x1)``, as views (the normalisation
    is the whole image's)."""
    y0, x0, y1, x1 = (int(v) for v in box)
    return dataclasses.replace(micrograph, raw=micrograph.raw[y0:y1, x0:x1],
                               grey=micrograph.grey[y0:y1, x0:x1], rgb=micrograph.rgb[y0:y1, x0:x1])


def merge_across_seams(shape: tuple[int, int], boxes: np.ndarray, per_tile: Iterable[Proposals],
                       seam_iou: float) -> BoxMasks:
    """Masks of every tile, in image coordinates, with the masks that continue across a seam joined.

    shape: (H, W) of the image; boxes: (T, 4) tiles as :func:`tile_boxes` gives them;
    per_tile: T proposals, tile t's of shape ``(y1 - y0, x1 - x0)``, consumed one at a time.
    Returns the merged masks; a merged mask's score is its members' area-weighted mean score.
    """
    tiles = []
    for box, proposals in zip(boxes, per_tile, strict=True):
        tiles.append(BoxMasks.from_stack(proposals.masks, proposals.scores, (int(box[0]), int(box[1])), shape))
    everything = _concatenate(shape, tiles)
    first = np.cumsum([0] + [len(t) for t in tiles])
    group = np.arange(len(everything))
    for a, b in _overlapping_tiles(boxes):
        band = np.concatenate([np.maximum(boxes[a, :2], boxes[b, :2]), np.minimum(boxes[a, 2:], boxes[b, 2:])])
        for i, j in _seam_matches(everything, range(first[a], first[a + 1]), range(first[b], first[b + 1]),
                                  band, seam_iou):
            _join(group, i, j)
    return _unite(everything, np.array([_root(group, i) for i in range(len(everything))], np.int64))


def _concatenate(shape: tuple[int, int], parts: list[BoxMasks]) -> BoxMasks:
    boxes = np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4), np.int64)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros(0, np.float32)
    return BoxMasks(shape, boxes, tuple(c for p in parts for c in p.crops), scores)


def _overlapping_tiles(boxes: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (a, b), a < b, of tiles whose boxes overlap."""
    top = np.maximum(boxes[:, None, 0], boxes[None, :, 0])
    left = np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    bottom = np.minimum(boxes[:, None, 2], boxes[None, :, 2])
    right = np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    a, b = np.nonzero(np.triu((bottom > top) & (right > left), k=1))
    return list(zip(a.tolist(), b.tolist()))


def _seam_matches(masks: BoxMasks, of_a: range, of_b: range, band: np.ndarray,
                  seam_iou: float) -> list[tuple[int, int]]:
    """One-to-one matches (i in ``of_a``, j in ``of_b``) whose parts inside ``band`` have
    IoU >= ``seam_iou``, best IoU first."""
    a = [i for i in of_a if _meets(masks.boxes[i], band)]
    b = [j for j in of_b if _meets(masks.boxes[j], band)]
    if not a or not b:
        return []
    parts_a = np.stack([masks.part(i, band).ravel() for i in a]).astype(np.float32)
    parts_b = np.stack([masks.part(j, band).ravel() for j in b]).astype(np.float32)
    inter = parts_a @ parts_b.T  # exact: counts < 2**24 (a band is at most one tile)
    union = parts_a.sum(1)[:, None] + parts_b.sum(1)[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    matches, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        ia, jb = divmod(int(flat), len(b))
        if iou[ia, jb] < seam_iou:
            break
        if ia not in used_a and jb not in used_b:
            used_a.add(ia)
            used_b.add(jb)
            matches.append((a[ia], b[jb]))
    return matches


def _meets(box: np.ndarray, window: np.ndarray) -> bool:
    return bool(max(box[0], window[0]) < min(box[2], window[2]) and max(box[1], window[1]) < min(box[3], window[3]))


def _root(group: np.ndarray, i: int) -> int:
    while group[i] != i:
        group[i] = group[group[i]]
        i = group[i]
    return int(i)


def _join(group: np.ndarray, i: int, j: int) -> None:
    ri, rj = _root(group, i), _root(group, j)
    group[max(ri, rj)] = min(ri, rj)


def _unite(masks: BoxMasks, root: np.ndarray) -> BoxMasks:
    """One mask per distinct ``root`` (M,): the union of its members, in order of first member."""
    roots = np.unique(root)
    areas = masks.areas().astype(np.float64)
    boxes, crops, scores = [], [], []
    for r in roots:
        members = np.flatnonzero(root == r)
        box = np.concatenate([masks.boxes[members, :2].min(0), masks.boxes[members, 2:].max(0)])
        crop = np.zeros((box[2] - box[0], box[3] - box[1]), bool)
        for m in members:
            y0, x0, y1, x1 = masks.boxes[m] - np.concatenate([box[:2], box[:2]])
            crop[y0:y1, x0:x1] |= masks.crops[m]
        boxes.append(box)
        crops.append(crop)
        scores.append(np.average(masks.scores[members], weights=areas[members]))
    return BoxMasks(masks.shape, np.array(boxes, np.int64).reshape(-1, 4), tuple(crops),
                    np.array(scores, np.float32))
