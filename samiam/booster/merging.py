"""Mask merging (paper section 3.3.2): masks whose crops share a texture become one material.

Method, for ``masks: (N, H, W)`` on a ``grey: (H, W)`` micrograph:

1. **Crops.** Side ``S = round(scale_to_image(settings.crop_size, H, W))`` (at least
   :data:`MIN_CROP_SIDE`, at most the image side). Each mask gets up to ``crops_per_mask`` grid
   crops lying at least ``crop_inside`` inside it (:func:`samiam.booster.crops.sample_crops`,
   drawn with ``np.random.default_rng(settings.seed)``, so results are reproducible).
2. **Small masks.** A mask with no such crop but an area of at least :data:`SMALL_MASK_AREA` px
   gets crops of what lies inside it: the largest squares that fit in it around its most interior
   pixel (distance-transform maximum) and, up to ``crops_per_mask``, around further deep pixels
   whose squares do not overlap, scaled to ``S``
   (:func:`samiam.booster.crops.interior_crops`: a particle smaller than a crop is looked at,
   not its surroundings, once; a long thin strip all along its length, so that its vote does not
   rest on the one or two lattice cells of a single enlarged square); these crops only *vote*,
   they do not shape the clusters (unless no mask has a grid crop). A smaller mask with no crop is an island: it is dropped
   (assignment -1).
2b. **Populations.** The masks of one population (small masks that removal kept because they
   stand out from their immediate surroundings with one sign, :func:`samiam.booster.removal.populations`:
   nanoparticles, precipitates, voids) are one material of their own, whatever their crops: a
   particle's evidence is its contrast against the support around it, which crops of the whole
   image do not see (on real HAADF images the particles' mean is often the support's, which is
   thicker in places). Only the other masks go through steps 1-5, and a given ``materials``
   counts the populations' materials (at least one material is left for the other masks). A
   particle's pixels go to its material, not to the support mask it lies in (step 6: the
   smallest mask wins).
3. **Features.** All crops are embedded in one batch; each feature column is z-scored over the
   image's grid crops and each of the embedder's blocks is scaled by 1/sqrt(its width), so that
   every block weighs the same.
4. **Number of materials K.** ``settings.materials`` when given, capped at the number of masks
   with crops. Otherwise estimated by ``settings.k_estimator``:

   * ``silhouette``: KMeans on the grid crops for k = 2..min(max_materials, masks with crops);
     the k with the best silhouette score wins, unless that score is below
     ``settings.min_silhouette``, in which case K = 1. It rarely splits one material, also on
     real micrographs with strong intensity gradients, but misses materials that differ only by a
     few per cent in intensity.
   * ``separation``: from the masks themselves (:func:`samiam.booster.grouping.group_masks`):
     masks with at least ``min_group_crops`` grid crops are grouped, closest first, while two
     groups are alike: the intensity features of their crops differ by less than
     ``same_material_t2`` (mean squared Welch t), or they meet and show no *step* where they meet
     (:class:`samiam.booster.grouping.StepTest` on every grid crop within ``step_reach`` crop
     sides of the other group, :func:`samiam.booster.crops.crop_grid`: their difference is, with
     two standard errors to spare, less than ``step_ratio`` of the whole
     groups' difference), or one lies inside the other's masks and their difference is below
     four times ``same_material_t2`` (:meth:`samiam.booster.grouping.StepTest.nested`: SAM's
     mask of a part inside its mask of the whole); then while there are more than
     ``max_materials`` groups. K is the
     number of groups. A test over many crops separates materials a few per cent apart in
     intensity (synthetic classes 2 and 3), intensity features do not change across antiphase
     boundaries and rotated grains, and the step test keeps one lattice with a thickness gradient
     of tens of per cent (``samples/lsfo_lattice_haadf.jpg``) in one piece.

   * ``separation_all``: the same with every grid crop of each mask in the whole-group test, not
     ``crops_per_mask`` of them, crops of half the side (:data:`ALL_CROPS_SIDE`, so narrow layers
     hold enough to found a material) and ``same_material_t2`` times :data:`GRID_OVERLAP`: more
     power for a few large disjoint masks. The step test still looks through full-side crops
     (what ``step_ratio`` and ``step_reach`` were set with): half-side ones beside a border that
     a proposal drew part of a window into one material see that material on both sides.
   * ``auto`` (the default): ``separation_all`` for the classical proposer's masks, ``separation``
     for SAM's and given ones (:func:`k_estimator_for`).

   Give ``materials`` when it is known, as the paper does.
5. **Clusters and votes.** When there are no more masks with crops than K, nothing is merged
   (the authors' rule): every mask is its own material. Otherwise KMeans (``n_init`` =
   :data:`KMEANS_RESTARTS`, ``random_state = settings.seed``) is fitted to the grid crops, every
   crop gets its nearest centroid, and a mask's material is the majority vote of its crops; ties go
   to the tied centroid nearest to the mask's mean feature vector.
6. **Merge.** Material k is the union of its masks. Where materials overlap, a pixel goes to
   the material of the *smallest* mask claiming it, so a child of another texture stays visible
   inside its parent (:func:`samiam.masks.to_label_map`). Empty materials are dropped and the
   rest numbered by area, largest first.
7. **Scores.** A material's score is the area-weighted mean, over its masks, of (fraction of
   the mask's crops that voted for the material) x (proposal score), clipped to [0, 1].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from samiam import masks as masklib
from samiam.booster.crops import CropGrid, CropSample, crop_grid, cut_crops, interior_crops, sample_crops
from samiam.booster.embedders import TextureEmbedder, intensity_features
from samiam.booster.grouping import StepTest, count_late_groups, group_masks
from samiam.errors import MaskSetError, SettingsError
from samiam.settings import MergingSettings, scale_to_image

MIN_CROP_SIDE = 8
"""Smallest crop side in px, whatever the image size (texture features need a few lattice cells)."""
ALL_CROPS_SIDE = 0.5
"""``separation_all`` looks through crops of this fraction of the crop side (at least
:data:`MIN_CROP_SIDE`), so that a narrow layer holds enough of them to found a material."""
GRID_OVERLAP = 4
"""Grid crops start every half side in rows and columns, so every pixel lies in four of them: a
whole-group t statistic over every crop is about this many times that over independent crops,
and ``separation_all`` scales ``same_material_t2`` by it. Under the Hann window of the intensity
statistics, independent pixel noise alone would make it about 2, but the texture is correlated
over more than a crop; with 2 the classical path over-split (tuning seeds 200..229, 1024 px:
d1 96.6 -> 95.7 mIoU, K right 93 -> 91 %), so it stays 4."""
SMALL_MASK_AREA = 16
"""A mask with no grid crop still votes, through a crop of its own interior, from this many px;
smaller ones are islands and dropped."""
LATE_T2_FACTOR = 4.0
"""A mask with too few crops to found a group (2 to ``min_group_crops - 1``) still counts as a
material of its own when its separation from every group is this many times ``same_material_t2``
(a t statistic over so few crops has heavy tails: 4 x 5 is about the 97.5th percentile of F(1, 3))."""
K_ESTIMATORS = ("auto", "silhouette", "separation", "separation_all")
"""Values of ``merging.k_estimator``."""


def k_estimator_for(settings: MergingSettings, proposer: str) -> MergingSettings:
    """Resolve ``k_estimator="auto"`` for masks made by ``proposer`` (a proposer's ``name``).

    ``auto`` means ``separation_all`` for the classical proposer, whose few large, disjoint
    masks have passed a significance test already (every grid crop of a mask gives the test its
    power: materials a few per cent apart), and ``separation`` for SAM and for masks given by
    the caller, many and overlapping, where a sample of crops per mask is the safer test
    (8 tuning scenes per class at 1024 px: every crop lowers SAM-like d2 mIoU from 95.4 to 92.3 in
    ``bench/k_estimation.py``, while on classical masks it raises d2 from 85.5 to 88.6, K right
    75 % -> 100 %, before its crops were halved). Other values are returned unchanged.
    """
    if settings.k_estimator != "auto":
        return settings
    return replace(settings, k_estimator="separation_all" if proposer == "classical" else "separation")


KMEANS_RESTARTS = 10
"""KMeans initialisations; the best inertia wins."""


@dataclass(frozen=True)
class MergeResult:
    """Materials made by merging masks.

    materials: (K, H, W) bool, pairwise disjoint, ordered by area (largest first).
    scores: (K,) float32 in [0, 1].
    assignment: (N,) int64, material index of each input mask, -1 when dropped.
    n_materials_estimated: K chosen by the estimator; None when ``settings.materials`` was given.
    """

    materials: np.ndarray
    scores: np.ndarray
    assignment: np.ndarray
    n_materials_estimated: int | None


def crop_side(settings: MergingSettings, height: int, width: int) -> int:
    """Crop side in px for an image of ``height`` x ``width`` (see step 1 of the module docstring)."""
    side = max(round(scale_to_image(settings.crop_size, height, width)), MIN_CROP_SIDE)
    return min(side, height, width)


def merge_masks(grey: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                settings: MergingSettings, embedder: TextureEmbedder,
                populations: np.ndarray | None = None) -> MergeResult:
    """Merge ``masks: (N, H, W) bool`` with proposal ``scores: (N,) float`` into materials by
    clustering the texture of their crops of ``grey: (H, W) float32`` (method: module docstring).
    ``populations: (N,) int`` (:attr:`samiam.booster.removal.RemovalResult.population`, -1: in
    none) makes the masks of each population one material (step 2b).

    Raises :class:`~samiam.errors.MaskSetError` when the masks do not fit the image or
    ``populations`` does not fit the masks, and :class:`~samiam.errors.SettingsError` for merging
    settings out of range.
    """
    _check(settings)
    masks = masklib.as_mask_stack(masks, grey.shape)
    n = len(masks)
    population = np.full(n, -1, np.int64) if populations is None else np.asarray(populations, np.int64)
    if population.shape != (n,):
        raise MaskSetError(f"need one population number per mask ({n}); got shape {population.shape}")
    numbers, member_of = np.unique(population, return_inverse=True)
    member_of = member_of.ravel() - int((numbers < 0).any())  # 0.. for the populations present, -1: none
    n_populations = int((numbers >= 0).sum())
    single = member_of < 0
    if settings.materials is not None:
        settings = replace(settings, materials=max(settings.materials - n_populations, 1))
    cluster, support, estimated = _cluster(grey, masks[single], settings, embedder)
    everyone = np.full(n, -1, np.int64)
    everyone[single] = cluster
    first = int(cluster.max()) + 1 if len(cluster) else 0
    everyone[~single] = first + member_of[~single]
    agreement = np.ones(n)
    agreement[single] = support
    return _merge(masks, scores, everyone, agreement,
                  None if estimated is None else estimated + n_populations)


def _cluster(grey: np.ndarray, masks: np.ndarray, settings: MergingSettings,
             embedder: TextureEmbedder) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Steps 1-5 of the module docstring for ``masks: (N, H, W) bool`` on ``grey: (H, W)``: the
    cluster of each mask ``(N,) int64`` (-1: dropped), the fraction of its crops that agree
    ``(N,) float64`` and K as estimated (None when ``settings.materials`` was given)."""
    n, h, w = masks.shape
    side = crop_side(settings, h, w)
    sample = sample_crops(masks, side, settings.crops_per_mask, settings.crop_inside,
                          np.random.default_rng(settings.seed))
    has_grid_crop = sample.counts(n) > 0
    fallback = ~has_grid_crop & (masklib.areas(masks) >= SMALL_MASK_AREA)
    inner_crops, inner_owner = interior_crops(grey, masks[fallback], side, settings.crops_per_mask)
    owner = np.concatenate([sample.owner, np.flatnonzero(fallback)[inner_owner]])
    eligible = has_grid_crop | fallback
    n_eligible = int(eligible.sum())
    if n_eligible == 0:
        return np.full(n, -1, np.int64), np.zeros(n), 0 if settings.materials is None else None

    fit_rows = np.arange(len(owner)) < len(sample.boxes)
    if not fit_rows.any():
        fit_rows[:] = True
    embedded = np.concatenate([_embed_boxes(grey, sample.boxes, embedder),
                               _embed_crops(inner_crops, embedder)])
    features = _standardise(embedded, fit_rows, embedder.blocks)

    if settings.materials is not None:
        k, estimated = min(settings.materials, n_eligible), None
    else:
        k = estimated = estimate_materials(grey, masks, sample, features[fit_rows], n_eligible, settings)

    cluster = np.full(n, -1, np.int64)
    support = np.zeros(n)
    if n_eligible <= k:
        cluster[eligible] = np.arange(n_eligible)
        support[eligible] = 1.0
    else:
        kmeans = _fit_kmeans(features[fit_rows], k, settings.seed)
        cluster[eligible], support[eligible] = _vote(features, owner, kmeans, np.flatnonzero(eligible))
    return cluster, support, estimated


def _check(settings: MergingSettings) -> None:
    problems = [f"merging.{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
        ("crops_per_mask", settings.crops_per_mask, settings.crops_per_mask >= 1, "at least 1"),
        ("crop_size", settings.crop_size, settings.crop_size > 0, "positive"),
        ("crop_inside", settings.crop_inside, 0 < settings.crop_inside <= 1, "in (0, 1]"),
        ("materials", settings.materials, settings.materials is None or settings.materials >= 1,
         "None (estimate) or at least 1"),
        ("max_materials", settings.max_materials, settings.max_materials >= 1, "at least 1"),
        ("k_estimator", settings.k_estimator, settings.k_estimator in K_ESTIMATORS,
         f"one of {', '.join(K_ESTIMATORS)}"),
        ("same_material_t2", settings.same_material_t2, settings.same_material_t2 > 0, "positive"),
        ("min_group_crops", settings.min_group_crops, settings.min_group_crops >= 2, "at least 2"),
        ("step_ratio", settings.step_ratio, settings.step_ratio >= 0, "at least 0"),
        ("step_reach", settings.step_reach, settings.step_reach >= 0, "at least 0"),
    ) if not ok]
    if problems:
        raise SettingsError("; ".join(problems))


def estimate_materials(grey: np.ndarray, masks: np.ndarray, sample: CropSample, features: np.ndarray,
                       n_masks: int, settings: MergingSettings) -> int:
    """Number of materials shown by the grid crops ``sample`` of ``masks: (N, H, W) bool`` on
    ``grey: (H, W)`` (their standardised embeddings ``features: (M, D)``), ``n_masks`` of which
    have crops of some kind, by ``settings.k_estimator`` (step 4 of the module docstring)."""
    k_max = min(settings.max_materials, n_masks)
    if settings.k_estimator == "silhouette":  # "auto" means "separation" for masks given here
        k, score = best_silhouette(features, k_max, settings.seed)
        return k if score >= settings.min_silhouette else 1
    if len(sample.boxes) == 0:
        return 1
    side = int(sample.boxes[0, 2] - sample.boxes[0, 0])
    step_grid, step_features = _crop_grid_features(grey, masks, side, settings)
    if settings.k_estimator == "separation_all":
        grid, grid_features = _crop_grid_features(
            grey, masks, max(round(side * ALL_CROPS_SIDE), MIN_CROP_SIDE), settings)
        owner, column = np.nonzero(grid.owned)
        rows = grid_features[column]
    else:
        owner, rows = sample.owner, step_features[_grid_rows(step_grid.boxes, sample.boxes, grey.shape[1])]
    counts = np.bincount(owner, minlength=len(masks))
    founders = np.flatnonzero(counts >= settings.min_group_crops)
    if len(founders) == 0:
        founders = np.flatnonzero(counts >= 2)
    if len(founders) <= 1:
        return 1
    step = StepTest(step_grid, step_features, settings.step_ratio, settings.min_group_crops)
    threshold = settings.same_material_t2 * (GRID_OVERLAP if settings.k_estimator == "separation_all" else 1)
    groups = group_masks(rows, owner, founders, threshold, k_max, step)
    late = np.flatnonzero((counts >= 2) & (counts < settings.min_group_crops))
    added = count_late_groups(rows, owner, founders, groups, late, LATE_T2_FACTOR * threshold, step)
    return min(int(groups.max()) + 1 + added, k_max)


def _crop_grid_features(grey: np.ndarray, masks: np.ndarray, side: int,
                        settings: MergingSettings) -> tuple[CropGrid, np.ndarray]:
    """Every grid crop of ``side`` px inside ``masks: (N, H, W) bool`` (``settings.crop_inside``,
    near another mask within ``settings.step_reach`` crop sides) and their intensity features
    ``(C, F)`` on ``grey: (H, W)``."""
    reach = max(round(settings.step_reach * side / max(side // 2, 1)), 0)
    grid = crop_grid(masks, side, settings.crop_inside, reach)
    return grid, intensity_features(cut_crops(grey, grid.boxes))


def _grid_rows(grid_boxes: np.ndarray, boxes: np.ndarray, width: int) -> np.ndarray:
    """Row of ``grid_boxes: (C, 4)`` (row-major, distinct) holding each of ``boxes: (M, 4)``."""
    return np.searchsorted(grid_boxes[:, 0] * width + grid_boxes[:, 1], boxes[:, 0] * width + boxes[:, 1])


def best_silhouette(features: np.ndarray, k_max: int, seed: int) -> tuple[int, float]:
    """The k in 2..k_max whose KMeans clustering of ``features: (M, D)`` has the highest
    silhouette score, and that score; ``(1, -1.0)`` when no k >= 2 can be scored."""
    best = (1, -1.0)
    for k in range(2, min(k_max, len(features) - 1) + 1):
        labels = _fit_kmeans(features, k, seed).labels_
        if len(np.unique(labels)) >= 2:
            best = max(best, (k, float(silhouette_score(features, labels))), key=lambda pair: pair[1])
    return best


def _fit_kmeans(features: np.ndarray, k: int, seed: int) -> KMeans:
    """KMeans fitted to ``features: (M, D)``; duplicate crops may leave fewer than k distinct
    clusters, which is not an error here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=KMEANS_RESTARTS, random_state=seed).fit(features)


def _embed_boxes(grey: np.ndarray, boxes: np.ndarray, embedder: TextureEmbedder) -> np.ndarray:
    """Embed each distinct box once: ``boxes: (M, 4)`` -> ``(M, D) float64``."""
    unique, inverse = np.unique(boxes, axis=0, return_inverse=True)
    return np.asarray(embedder.embed(cut_crops(grey, unique)), np.float64)[inverse.ravel()]


def _embed_crops(crops: np.ndarray, embedder: TextureEmbedder) -> np.ndarray:
    """``crops: (M, S, S)`` -> ``(M, D) float64``; ``(0, D)`` when there are none."""
    if len(crops) == 0:
        return np.zeros((0, sum(embedder.blocks)))
    return np.asarray(embedder.embed(crops), np.float64)


def _standardise(features: np.ndarray, fit_rows: np.ndarray, blocks: tuple[int, ...]) -> np.ndarray:
    """Z-score each column over ``features[fit_rows]`` (constant columns become 0), then scale
    each block of columns by 1/sqrt(its width)."""
    reference = features[fit_rows]
    spread = reference.std(axis=0)
    z = (features - reference.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return z / np.sqrt(np.repeat(np.asarray(blocks, float), blocks))


def _vote(features: np.ndarray, owner: np.ndarray, kmeans: KMeans,
          voters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote of each voter mask's crops -> (cluster index, fraction of its crops agreeing)."""
    k = kmeans.n_clusters
    labels = kmeans.predict(features)
    n = int(owner.max()) + 1
    votes = np.zeros((n, k), np.int64)
    np.add.at(votes, (owner, labels), 1)
    totals = votes.sum(axis=1)
    means = np.zeros((n, features.shape[1]))
    np.add.at(means, owner, features)
    means /= np.maximum(totals, 1)[:, None]
    distance = np.linalg.norm(means[:, None, :] - kmeans.cluster_centers_[None], axis=2)
    tied = votes == votes.max(axis=1, keepdims=True)
    winner = np.argmin(np.where(tied, distance, np.inf), axis=1)
    support = votes[np.arange(n), winner] / np.maximum(totals, 1)
    return winner[voters], support[voters]


def _merge(masks: np.ndarray, scores: np.ndarray, cluster: np.ndarray, support: np.ndarray,
           estimated: int | None) -> MergeResult:
    """Union the masks of each cluster, resolve overlaps (smallest mask wins), drop empty
    materials, order by area and score them."""
    h, w = masks.shape[1:]
    kept = np.flatnonzero(cluster >= 0)
    owner_map = masklib.to_label_map(masks[kept]).astype(np.int64) - 1
    material_map = np.append(cluster[kept], -1)[owner_map]  # owner -1 (no mask) -> material -1
    n_clusters = int(cluster.max()) + 1 if len(kept) else 0
    area = np.bincount(material_map[material_map >= 0], minlength=n_clusters)
    order = [c for c in np.argsort(-area, kind="stable") if area[c] > 0]
    renumber = np.full(n_clusters + 1, -1, np.int64)  # the extra last entry maps cluster -1 to -1
    renumber[order] = np.arange(len(order))
    assignment = renumber[cluster]
    materials = material_map[None] == np.asarray(order, np.int64)[:, None, None]

    mask_area = masklib.areas(masks).astype(np.float64)
    quality = support * np.clip(np.asarray(scores, np.float64), 0, 1) * mask_area
    valid = assignment >= 0
    weighted = np.bincount(assignment[valid], quality[valid], minlength=len(order))
    total = np.bincount(assignment[valid], mask_area[valid], minlength=len(order))
    material_scores = np.clip(weighted / np.maximum(total, 1), 0, 1).astype(np.float32)
    return MergeResult(materials=materials.reshape(len(order), h, w), scores=material_scores,
                       assignment=assignment, n_materials_estimated=estimated)


def merge_assigned(masks: np.ndarray, scores: np.ndarray, assignment: np.ndarray,
                   support: np.ndarray) -> MergeResult:
    """Step 6-7 of the module docstring for an assignment made elsewhere (e.g. by a classifier):
    ``masks: (N, H, W) bool`` with proposal ``scores: (N,)``, ``assignment: (N,) int64`` (group of
    each mask, -1 to drop it) and ``support: (N,) float`` (fraction of its crops agreeing)."""
    return _merge(masks, scores, np.asarray(assignment, np.int64), np.asarray(support, np.float64), None)
