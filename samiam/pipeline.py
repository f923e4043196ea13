"""The engine's public entry points: :func:`segment`, :func:`boost` and :class:`Engine`.

image -> io.load_micrograph -> proposer.propose (per tile for large images) -> booster.remove_masks -> booster.merge_masks
      -> Segmentation (K non-overlapping material masks with scores)

The booster's lengths become pixels per image first (:func:`samiam.scale.settings_for_image`:
nm through the file's pixel size or the estimated lattice period, or the 1024 px reference rule).

Given a project's :class:`~samiam.booster.prototypes.Prototypes`, the materials also get the
project's label names (:mod:`samiam.booster.naming`): by naming the clusters, or (``naming.mode``
``supervised``, or ``auto`` for the classical proposer's masks) once every label is learned, by
classifying the masks instead of clustering them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from samiam import masks as masklib
from samiam.booster import k_estimator_for, merge_masks, remove_masks
from samiam.booster.embedders import TextureEmbedder, make_embedder
from samiam.booster.naming import check_naming, classify_masks, mode_for, name_materials
from samiam.booster.prototypes import Prototypes
from samiam.io import ImageSource, Micrograph, check_segmentable, load_micrograph
from samiam.proposals import Proposer, make_proposer, tiled
from samiam.scale import ImageScale, settings_for_image
from samiam.settings import MeasureSettings, Settings

if TYPE_CHECKING:
    from samiam.measure import Measurements

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segmentation:
    """What the engine returns for one image.

    materials: (K, H, W) bool, pairwise disjoint, one mask per material.
    scores: (K,) float32 in [0, 1], confidence of each material mask.
    proposals: (N, H, W) bool, the proposer's raw masks (before the booster).
    removed: (N,) object, why each proposal was removed (None when kept).
    assignment: (N,) int, material index of each proposal (-1 when removed or unassigned).
    names: K label names learned from the project's annotations, None for a material that got no
        confident name; None as a whole when no prototypes were given.
    settings: as used on this image (the booster's lengths in px resolved by :mod:`samiam.scale`).
    scale: the image's physical scale those lengths came from; None when unknown or not used.
    pixel_size, pixel_unit: what one pixel measures, as the image's file states it (None: not
        stated); :meth:`measure` gives lengths in nm through them.
    """

    materials: np.ndarray
    scores: np.ndarray
    proposals: np.ndarray
    removed: np.ndarray
    assignment: np.ndarray
    proposer: str
    embedder: str
    settings: Settings
    timings: dict[str, float] = field(default_factory=dict)
    names: tuple[str | None, ...] | None = None
    scale: ImageScale | None = None
    pixel_size: float | None = None
    pixel_unit: str | None = None

    def label_map(self) -> np.ndarray:
        """(H, W) uint16: 0 = unsegmented, k = material k (1-based, as in ``materials[k-1]``)."""
        return masklib.to_label_map(self.materials)

    def measure(self, settings: MeasureSettings | None = None) -> Measurements:
        """Area fractions, particle sizes and layer thicknesses of the materials
        (:func:`samiam.measure.measure_materials`), in nm when the file states the pixel size."""
        from samiam.measure import measure_materials

        return measure_materials(self.materials, self.pixel_size, self.pixel_unit, self.names, settings)

    def particle_instances(self, settings: MeasureSettings | None = None) -> np.ndarray:
        """(H, W) int32, one label per particle of the particle materials (0: none;
        :func:`samiam.measure.particle_instances`)."""
        from samiam.measure import particle_instances

        return particle_instances(self.materials, self.proposals, self.assignment, settings)

    @property
    def score(self) -> float:
        """Overall confidence: area-weighted mean of the material scores (0 when empty)."""
        return masklib.area_weighted_mean(self.materials, self.scores)


class Engine:
    """Proposer and texture embedder loaded once, reused for every image (one per worker)."""

    def __init__(self, settings: Settings | None = None,
                 proposer: Proposer | None = None, embedder: TextureEmbedder | None = None):
        self.settings = settings or Settings.from_env()
        self._proposer = proposer
        self.embedder = embedder or make_embedder(self.settings.merging)
        self._other_embedders: dict[tuple[str, str | None], TextureEmbedder] = {}
        """Embedders that settings passed to a call named, by (name, checkpoint)."""

    @property
    def proposer(self) -> Proposer:
        """The proposer, loaded on first use (a worker calls :meth:`load` at start instead)."""
        if self._proposer is None:
            self._proposer = make_proposer(self.settings.proposals)
        return self._proposer

    def load(self) -> Engine:
        """Load every model now, so that the first request does not pay for it."""
        _ = self.proposer
        return self

    def segment(self, image: ImageSource | Micrograph, settings: Settings | None = None,
                prototypes: Prototypes | None = None) -> Segmentation:
        """Propose masks for ``image`` and boost them. ``settings`` may override the booster's;
        ``prototypes`` (made with this engine's embedder) name the materials."""
        settings = settings or self.settings
        micrograph = _as_micrograph(image, settings)
        started = time.perf_counter()
        proposals = tiled.propose(self.proposer, micrograph, settings)
        timings = {"proposals_s": time.perf_counter() - started}
        return self._boost(micrograph, proposals.masks, proposals.scores, settings, timings,
                           self.proposer.name, prototypes)

    def boost(self, image: ImageSource | Micrograph, masks: np.ndarray,
              scores: np.ndarray | None = None, settings: Settings | None = None,
              prototypes: Prototypes | None = None) -> Segmentation:
        """Run only the booster on given proposals ``masks: (N, H, W) bool`` (``prototypes``: as
        in :meth:`segment`)."""
        settings = settings or self.settings
        micrograph = _as_micrograph(image, settings)
        masks = masklib.as_mask_stack(masks, micrograph.grey.shape)
        scores = np.ones(len(masks), np.float32) if scores is None else np.asarray(scores, np.float32)
        return self._boost(micrograph, masks, scores, settings, {}, "given", prototypes)

    def embedder_for(self, settings: Settings) -> TextureEmbedder:
        """The texture embedder that ``settings`` ask for: the engine's own unless they name
        another, which is built once (a ResNet loads its checkpoint once) and kept."""
        wanted = (settings.merging.embedder, settings.merging.embedder_checkpoint)
        if wanted == (self.settings.merging.embedder, self.settings.merging.embedder_checkpoint):
            return self.embedder
        if wanted not in self._other_embedders:
            self._other_embedders[wanted] = make_embedder(settings.merging)
        return self._other_embedders[wanted]

    def _boost(self, micrograph: Micrograph, masks: np.ndarray, scores: np.ndarray,
               settings: Settings, timings: dict[str, float], proposer_name: str,
               prototypes: Prototypes | None) -> Segmentation:
        started = time.perf_counter()
        settings, scale = settings_for_image(settings, micrograph.grey, micrograph.pixel_size,
                                             micrograph.pixel_unit)
        timings["scale_s"] = time.perf_counter() - started
        embedder = self.embedder_for(settings)
        started = time.perf_counter()
        removal = remove_masks(masks, micrograph.grey, settings.removal)
        timings["removal_s"] = time.perf_counter() - started
        started = time.perf_counter()
        kept = np.flatnonzero(removal.keep)
        merging = k_estimator_for(settings.merging, proposer_name)
        names = None
        if prototypes is not None:
            check_naming(settings.naming, prototypes, embedder)
        if prototypes is not None and prototypes.complete \
                and mode_for(settings.naming, proposer_name) == "supervised":
            merged, naming = classify_masks(micrograph.grey, masks[kept], scores[kept], prototypes,
                                            embedder, settings)
            names = naming.names
        else:
            merged = merge_masks(micrograph.grey, masks[kept], scores[kept], merging, embedder,
                                 removal.population[kept])
        timings["merging_s"] = time.perf_counter() - started
        if prototypes is not None and names is None:
            started = time.perf_counter()
            names = name_materials(micrograph.grey, merged.materials, prototypes, embedder, settings).names
            timings["naming_s"] = time.perf_counter() - started
        assignment = np.full(len(masks), -1, np.int64)
        assignment[kept] = merged.assignment
        log.info("%s: %d proposals -> %d kept -> %d materials", micrograph.name, len(masks),
                 len(kept), len(merged.materials))
        return Segmentation(
            materials=merged.materials, scores=merged.scores, proposals=masks,
            removed=removal.reasons, assignment=assignment, proposer=proposer_name,
            embedder=embedder.name, settings=settings, timings=timings, names=names, scale=scale,
            pixel_size=micrograph.pixel_size, pixel_unit=micrograph.pixel_unit)


def _as_micrograph(image: ImageSource | Micrograph, settings: Settings) -> Micrograph:
    """``image`` decoded, and large enough to segment (:func:`samiam.io.check_segmentable`)."""
    micrograph = image if isinstance(image, Micrograph) else load_micrograph(image, settings.image)
    check_segmentable(micrograph)
    return micrograph


def segment(image: ImageSource | Micrograph, settings: Settings | None = None,
            prototypes: Prototypes | None = None) -> Segmentation:
    """Segment one micrograph into material masks (loads models on each call; use
    :class:`Engine` to keep them loaded)."""
    return Engine(settings).segment(image, prototypes=prototypes)


def boost(image: ImageSource | Micrograph, masks: np.ndarray, settings: Settings | None = None,
          prototypes: Prototypes | None = None) -> Segmentation:
    """Run the semantic booster on proposals made elsewhere: ``masks: (N, H, W) bool``."""
    settings = settings or Settings.from_env()
    return Engine(settings).boost(image, masks, settings=settings, prototypes=prototypes)
