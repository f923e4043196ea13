"""Give material masks the project's own label names, from :mod:`samiam.booster.prototypes`.

Two ways, chosen by ``naming.mode`` (``bench/naming.py`` measures both; ``auto``, the default,
picks the better one for the kind of proposals, :func:`mode_for`):

* **cluster** (:func:`name_materials`): the booster clusters as usual; then each material's
  distance to each label is the mean, over up to ``naming.crops_per_label`` crops inside it, of
  the crop's distance to the label (:meth:`Prototypes.distances`: to its nearest exemplars).
  Materials and labels are paired one to one by the least total distance (Hungarian,
  :func:`scipy.optimize.linear_sum_assignment`). A material whose distance to its paired label,
  in units of that label's spread, exceeds ``naming.far_distance``, or that is left without a
  label (more materials than learned labels), gets no confident name: ``None``. The Label Studio
  adapter then gives it the config's next unused label with a score of at most
  ``naming.unnamed_score``. Pairing by distances in spread units instead named 94.4 % of the
  regions right after two corrected images in ``bench/naming.py``, against 96.0 %: a label
  with a wide spread (a material with grains or a thickness gradient) attracted the others.
* **supervised** (:func:`classify_masks`, the paper's section 5.2 with prototypes in place of a
  trained classifier): when every label of the project has prototypes, each crop of each kept
  proposal gets the label it is nearest to; each mask gets its crops' majority label (ties: the
  lowest mean distance); masks of one label merge (:func:`samiam.booster.merging.merge_assigned`).
  A mask whose mean distance to its label, in units of the label's spread, exceeds
  ``naming.far_distance`` shows none of the
  project's labels (a gap band, vacuum, debris): it is dropped, as every label is learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from samiam import masks as masklib
from samiam.booster.embedders import TextureEmbedder
from samiam.booster.merging import MergeResult, merge_assigned
from samiam.booster.prototypes import Prototypes, embed_regions
from samiam.errors import SettingsError
from samiam.settings import NamingSettings, Settings

MODES = ("auto", "cluster", "supervised")
"""Values of ``naming.mode``."""


def mode_for(settings: NamingSettings, proposer: str) -> str:
    """Resolve ``naming.mode = "auto"`` for masks made by ``proposer`` (a proposer's ``name``).

    Measured with ``bench/naming.py --series 6 --size 512`` (regions named right after 2 / 10
    corrected images): on SAM-like masks ``cluster`` 96.0 / 97.6 % vs ``supervised`` 85.8 / 95.2 %;
    on the classical proposer's masks, whose number of materials the silhouette estimator often
    gets wrong, ``supervised`` 79.2 / 86.8 % vs ``cluster`` 64.1 / 63.0 %. So ``auto`` means
    ``supervised`` for ``"classical"`` and ``cluster`` for SAM and for masks given by the caller.
    """
    if settings.mode != "auto":
        return settings.mode
    return "supervised" if proposer == "classical" else "cluster"


@dataclass(frozen=True)
class Naming:
    """Names of K materials.

    names: K entries, a learned label's name or None (no confident name).
    distances: (K,) float64, distance of each material to the label it was paired with, in
        units of the label's spread (inf when it was paired with none).
    """

    names: tuple[str | None, ...]
    distances: np.ndarray


def check_naming(settings: NamingSettings, prototypes: Prototypes, embedder: TextureEmbedder) -> None:
    """Raise :class:`SettingsError` for naming settings out of range and :class:`PrototypeError`
    when ``prototypes`` were made by another embedder than ``embedder``."""
    problems = [f"naming.{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
        ("mode", settings.mode, settings.mode in MODES, f"one of {', '.join(MODES)}"),
        ("far_distance", settings.far_distance, settings.far_distance > 0, "positive"),
        ("unnamed_score", settings.unnamed_score, 0 <= settings.unnamed_score <= 1, "in [0, 1]"),
        ("crops_per_label", settings.crops_per_label, settings.crops_per_label >= 1, "at least 1"),
        ("exemplars_per_label", settings.exemplars_per_label, settings.exemplars_per_label >= 1, "at least 1"),
    ) if not ok]
    if problems:
        raise SettingsError("; ".join(problems))
    prototypes.require_embedder(embedder)


def material_distances(grey: np.ndarray, masks: np.ndarray, prototypes: Prototypes,
                       embedder: TextureEmbedder, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Mean crop distance of each of ``masks: (K, H, W) bool`` on ``grey: (H, W)`` to each label.

    Returns ``(K, L) float64`` (inf for a mask without crops) and ``(K,) int64`` crop counts.
    """
    features, owner = embed_regions(grey, masks, settings.naming.crops_per_label, settings, embedder)
    per_crop = prototypes.distances(features) if len(features) else np.zeros((0, len(prototypes.labels)))
    counts = np.bincount(owner, minlength=len(masks))
    sums = np.zeros((len(masks), len(prototypes.labels)))
    np.add.at(sums, owner, per_crop)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.inf), counts


def assign_names(distances: np.ndarray, spreads: np.ndarray, names: tuple[str, ...],
                 far_distance: float) -> Naming:
    """One-to-one names for K materials from their ``distances: (K, L)`` to L labels ``names``
    with ``spreads: (L,)`` (Hungarian on the distances); a pair farther than ``far_distance``
    spreads of its label is no name (module docstring)."""
    k = len(distances)
    chosen: list[str | None] = [None] * k
    paired = np.full(k, np.inf)
    if k and len(names):
        finite = np.where(np.isfinite(distances), distances, np.finfo(np.float64).max / (k + len(names)))
        rows, cols = linear_sum_assignment(finite)
        for row, col in zip(rows, cols):
            paired[row] = distances[row, col] / spreads[col]
            if paired[row] <= far_distance:
                chosen[row] = names[col]
    return Naming(names=tuple(chosen), distances=paired)


def name_materials(grey: np.ndarray, materials: np.ndarray, prototypes: Prototypes,
                   embedder: TextureEmbedder, settings: Settings) -> Naming:
    """Name ``materials: (K, H, W) bool`` (the booster's output) on ``grey: (H, W)`` by their
    nearest learned labels, one to one (module docstring, *cluster*)."""
    if not prototypes.labels:
        return Naming(names=(None,) * len(materials), distances=np.full(len(materials), np.inf))
    distances, _ = material_distances(grey, materials, prototypes, embedder, settings)
    return assign_names(distances, prototypes.spreads, prototypes.names, settings.naming.far_distance)


def classify_masks(grey: np.ndarray, masks: np.ndarray, scores: np.ndarray, prototypes: Prototypes,
                   embedder: TextureEmbedder, settings: Settings) -> tuple[MergeResult, Naming]:
    """The supervised booster (module docstring): ``masks: (N, H, W) bool`` with proposal
    ``scores: (N,)`` on ``grey: (H, W)`` -> materials merged by label, and their names."""
    masks = masklib.as_mask_stack(masks, grey.shape)
    n, n_labels = len(masks), len(prototypes.labels)
    features, owner = embed_regions(grey, masks, settings.merging.crops_per_mask, settings, embedder)
    group = np.full(n, -1, np.int64)
    support = np.zeros(n)
    per_crop = prototypes.distances(features) if len(features) and n_labels else np.zeros((0, n_labels))
    if len(per_crop):
        votes = np.zeros((n, n_labels), np.int64)
        np.add.at(votes, (owner, per_crop.argmin(axis=1)), 1)
        counts = votes.sum(axis=1)
        mean = np.zeros((n, n_labels))
        np.add.at(mean, owner, per_crop)
        mean /= np.maximum(counts, 1)[:, None]
        tied = votes == votes.max(axis=1, keepdims=True)
        winner = np.argmin(np.where(tied, mean, np.inf), axis=1)
        voted = counts > 0
        far = mean[np.arange(n), winner] / prototypes.spreads[winner] > settings.naming.far_distance
        group[voted & ~far] = winner[voted & ~far]
        support[voted] = (votes[np.arange(n), winner] / np.maximum(counts, 1))[voted]
    merged = merge_assigned(masks, scores, group, support)
    label_of = np.zeros(len(merged.materials), np.int64)  # every material holds masks of one label
    label_of[merged.assignment[merged.assignment >= 0]] = group[merged.assignment >= 0]
    material = merged.assignment[owner]  # (M,) material of each crop, -1 when its mask was dropped
    rows = np.flatnonzero(material >= 0)
    sums = np.bincount(material[rows], per_crop[rows, label_of[material[rows]]], minlength=len(label_of))
    counts = np.bincount(material[rows], minlength=len(label_of))
    spreads = prototypes.spreads[label_of] if n_labels else np.ones(len(label_of))
    return merged, Naming(names=tuple(prototypes.names[g] for g in label_of),
                          distances=np.where(counts > 0, sums / np.maximum(counts, 1) / spreads, np.inf))
