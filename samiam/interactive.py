"""Click-to-fix: one material region from a few clicks or a box on a micrograph.

Two paths answer, depending on what the engine holds:

* **SAM** (a checkpoint is loaded): the points and box go to ``segment_anything.SamPredictor``.
  The image embedding (SAM's encoder output, the expensive part) is cached per image, keyed by
  a hash of the pixels SAM sees and the model, so a second click on the same image runs only the
  prompt encoder and mask decoder.
* **weight-free** (no checkpoint): the engine's booster segmentation of the image (cached per
  image) is cut into connected regions; the region under the first positive point wins.

Either path can answer **semantically**: the region grows to the whole material it belongs to,
as the booster's texture clustering found it (every region of that material in the image), which
is the paper's "promptable" task. The answer names the path it took (``ClickAnswer.path``) so
that the service can say which one answered.

>>> clicker = Clicker(Engine().load())                                  # doctest: +SKIP
>>> answer = clicker.click(micrograph, Prompt.from_points([(120, 80)], [1]))   # doctest: +SKIP
>>> answer.mask.shape == micrograph.shape, answer.path                  # doctest: +SKIP
(True, 'sam')
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from samiam.errors import PromptError
from samiam.io import Micrograph
from samiam.settings import Settings

FOREGROUND, BACKGROUND = 1, 0
"""Point labels, as SAM takes them."""


@dataclass(frozen=True)
class Prompt:
    """Where the annotator clicked, in pixels of the micrograph.

    points: (P, 2) float64, ``(x, y)`` per click (column, row), P >= 0.
    labels: (P,) int64, :data:`FOREGROUND` (1) or :data:`BACKGROUND` (0) per point.
    box: (4,) float64 ``(x0, y0, x1, y1)`` with x0 < x1 and y0 < y1, or None.
    At least one foreground point or a box is required.
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None = None

    def __post_init__(self):
        points = np.asarray(self.points, np.float64).reshape(-1, 2)
        labels = np.asarray(self.labels).reshape(-1)
        if labels.shape != (len(points),):
            raise PromptError(f"{len(points)} points but {labels.size} point labels")
        if not np.isin(labels, (FOREGROUND, BACKGROUND)).all():
            raise PromptError(f"point labels must be {FOREGROUND} (foreground) or {BACKGROUND} (background)")
        box = None if self.box is None else np.asarray(self.box, np.float64).reshape(-1)
        if box is not None and (box.shape != (4,) or not box[0] < box[2] or not box[1] < box[3]):
            raise PromptError(f"a box is (x0, y0, x1, y1) with x0 < x1 and y0 < y1; got {self.box!r}")
        if not np.isfinite(points).all() or (box is not None and not np.isfinite(box).all()):
            raise PromptError("click coordinates must be finite numbers")
        if box is None and not (labels == FOREGROUND).any():
            raise PromptError("give at least one foreground point or a box")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels.astype(np.int64))
        object.__setattr__(self, "box", box)

    @classmethod
    def from_points(cls, points, labels, box=None) -> Prompt:
        """``points``: sequence of ``(x, y)``; ``labels``: 1 (foreground) or 0 per point."""
        return cls(np.asarray(points, np.float64).reshape(-1, 2), np.asarray(labels), box)

    def check_inside(self, shape: tuple[int, int]) -> None:
        """Raise :class:`PromptError` when a point or the box lies outside an image of ``shape`` (H, W)."""
        height, width = shape
        corners = self.points if self.box is None else np.vstack([self.points, self.box.reshape(2, 2)])
        outside = (corners[:, 0] < 0) | (corners[:, 0] > width) | (corners[:, 1] < 0) | (corners[:, 1] > height)
        if outside.any():
            raise PromptError(f"click {corners[outside][0].tolist()} lies outside the {width}x{height} image")

    @property
    def anchor(self) -> tuple[int, int]:
        """``(row, col)`` of the first foreground point, else the box centre."""
        foreground = self.points[self.labels == FOREGROUND]
        x, y = foreground[0] if len(foreground) else ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)
        return int(y), int(x)


@dataclass(frozen=True)
class ClickAnswer:
    """One region for one prompt.

    mask: (H, W) bool, the region.
    score: confidence in [0, 1] (SAM's predicted IoU, or the booster's material score).
    path: which path answered: ``"sam"``, ``"sam+semantic"``, ``"weight-free"`` or
        ``"weight-free+semantic"``.
    encoder_ran: whether SAM's image encoder ran for this click (False: cached embedding, or no SAM).
    timings: seconds per step (``encoder_s``, ``decoder_s``, ``segmentation_s``).
    """

    mask: np.ndarray
    score: float
    path: str
    encoder_ran: bool
    timings: dict[str, float] = field(default_factory=dict)


class _LRU:
    """A small thread-safe least-recently-used map (image key -> cached value)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def put(self, key: str, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def image_key(micrograph: Micrograph) -> str:
    """SHA-256 of the pixels SAM sees (``micrograph.rgb``) and their shape."""
    digest = hashlib.sha256(repr(micrograph.rgb.shape).encode())
    digest.update(np.ascontiguousarray(micrograph.rgb).data)
    return digest.hexdigest()


class Clicker:
    """Answers prompts on micrographs with the engine's models; one per worker process.

    ``cache_size`` image embeddings (about 4 MB each for SAM's 256x64x64 float32) and booster
    segmentations are kept, least recently used first out.
    """

    def __init__(self, engine, cache_size: int = 8):
        self.engine = engine
        self._embeddings = _LRU(cache_size)
        self._segmentations = _LRU(cache_size)
        self._predictor = None
        self._predictor_lock = threading.Lock()

    @property
    def uses_sam(self) -> bool:
        return getattr(self.engine.proposer, "model", None) is not None

    def click(self, micrograph: Micrograph, prompt: Prompt, *, semantic: bool = False,
              settings: Settings | None = None) -> ClickAnswer:
        """The region ``prompt`` points at in ``micrograph`` (grown to its whole material when
        ``semantic``). ``settings`` are the booster's, for the weight-free and semantic paths."""
        prompt.check_inside(micrograph.shape)
        key = image_key(micrograph)
        timings: dict[str, float] = {}
        if self.uses_sam:
            mask, score, encoder_ran = self._sam_mask(micrograph, key, prompt, timings)
            path = "sam"
        else:
            mask, score = self._weight_free_region(micrograph, key, prompt, settings, timings)
            encoder_ran, path = False, "weight-free"
        if semantic:
            mask, score = self._grow_to_material(micrograph, key, mask, score, settings, timings)
            path += "+semantic"
        return ClickAnswer(mask=mask, score=float(np.clip(score, 0.0, 1.0)), path=path,
                           encoder_ran=encoder_ran, timings=timings)

    # -- SAM -------------------------------------------------------------------------------

    def _sam_mask(self, micrograph: Micrograph, key: str, prompt: Prompt,
                  timings: dict[str, float]) -> tuple[np.ndarray, float, bool]:
        import torch
        from segment_anything import SamPredictor

        with self._predictor_lock, torch.inference_mode():
            if self._predictor is None:
                self._predictor = SamPredictor(self.engine.proposer.model)
            predictor = self._predictor
            cached = self._embeddings.get(key)
            started = time.perf_counter()
            if cached is None:
                predictor.set_image(micrograph.rgb)
                self._embeddings.put(key, (predictor.features, predictor.original_size, predictor.input_size))
                timings["encoder_s"] = time.perf_counter() - started
            else:
                predictor.features, predictor.original_size, predictor.input_size = cached
                predictor.is_image_set = True
            started = time.perf_counter()
            single_point = prompt.box is None and len(prompt.points) == 1
            masks, ious, _ = predictor.predict(
                point_coords=prompt.points if len(prompt.points) else None,
                point_labels=prompt.labels if len(prompt.points) else None,
                box=prompt.box, multimask_output=single_point)  # SAM's advice for ambiguous single clicks
            timings["decoder_s"] = time.perf_counter() - started
        best = int(np.argmax(ious))
        return masks[best].astype(bool), float(ious[best]), cached is None

    # -- booster segmentation (weight-free and semantic paths) -------------------------------

    def _segmentation(self, micrograph: Micrograph, key: str, settings: Settings | None,
                      timings: dict[str, float]):
        settings = settings or self.engine.settings
        cache_key = f"{key}:{json.dumps(settings.to_dict(), sort_keys=True)}"
        segmentation = self._segmentations.get(cache_key)
        if segmentation is None:
            started = time.perf_counter()
            segmentation = self.engine.segment(micrograph, settings)
            self._segmentations.put(cache_key, segmentation)
            timings["segmentation_s"] = time.perf_counter() - started
        return segmentation

    def _weight_free_region(self, micrograph: Micrograph, key: str, prompt: Prompt,
                            settings: Settings | None, timings: dict[str, float]) -> tuple[np.ndarray, float]:
        segmentation = self._segmentation(micrograph, key, settings, timings)
        labels = segmentation.label_map()
        if not labels.any():
            raise PromptError("the weight-free segmentation found no material region in this image")
        inside = np.ones(labels.shape, bool)
        if prompt.box is not None:
            x0, y0, x1, y1 = np.round(prompt.box).astype(int)
            inside = np.zeros(labels.shape, bool)
            inside[max(y0, 0):y1, max(x0, 0):x1] = True
        if (prompt.labels == FOREGROUND).any():  # the connected region under the first foreground point
            row, col = _nearest_labelled(labels, prompt.anchor)
            material = int(labels[row, col]) - 1
            regions, _ = ndimage.label(segmentation.materials[material])
            mask = (regions == regions[row, col]) & inside
        else:  # a box alone: the material that fills most of it
            counts = np.bincount(labels[inside], minlength=len(segmentation.materials) + 1)[1:]
            if not counts.any():
                raise PromptError("no material region lies inside the box")
            material = int(np.argmax(counts))
            mask = segmentation.materials[material] & inside
        for x, y in prompt.points[prompt.labels == BACKGROUND].astype(int):
            if mask[min(y, mask.shape[0] - 1), min(x, mask.shape[1] - 1)]:
                raise PromptError(f"background point ({x}, {y}) lies inside the chosen region; without a SAM "
                                  "checkpoint a region cannot be split, click another region instead")
        return mask, float(segmentation.scores[material])

    def _grow_to_material(self, micrograph: Micrograph, key: str, mask: np.ndarray, score: float,
                          settings: Settings | None, timings: dict[str, float]) -> tuple[np.ndarray, float]:
        """``mask`` joined with the booster material that covers most of it (unchanged when no
        material covers any of it)."""
        segmentation = self._segmentation(micrograph, key, settings, timings)
        if not len(segmentation.materials):
            return mask, score
        overlap = segmentation.materials.reshape(len(segmentation.materials), -1) @ mask.reshape(-1).astype(np.int64)
        best = int(np.argmax(overlap))
        if overlap[best] == 0:
            return mask, score
        return mask | segmentation.materials[best], min(score, float(segmentation.scores[best]))


def _nearest_labelled(labels: np.ndarray, anchor: tuple[int, int]) -> tuple[int, int]:
    """``(row, col)`` of the labelled pixel (``labels > 0``) nearest to ``anchor`` (itself when labelled)."""
    row = min(anchor[0], labels.shape[0] - 1)
    col = min(anchor[1], labels.shape[1] - 1)
    if labels[row, col]:
        return row, col
    _, (rows, cols) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    return int(rows[row, col]), int(cols[row, col])
