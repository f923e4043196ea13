"""Which masks show the same material? A separability test on their crops, then agglomeration.

Two groups of masks, with crop feature rows ``a: (Na, F)`` and ``b: (Nb, F)``, are compared by
:func:`separation`: the mean over the F features of the squared Welch t statistic of the
difference of the two groups' means. Under "same material" (crops drawn from one texture) each
squared t is about 1 whatever the number of crops; a real difference grows with the number of
crops, so a material differing by a few per cent in intensity, invisible to a silhouette score,
is many standard errors away once each side has ten crops of thousands of pixels.

:func:`group_masks` starts with one group per mask and repeatedly merges the two groups with the
smallest separation (pooling their crops), until the smallest is at least the threshold and there
are no more groups than allowed. The merging step feeds it the *intensity* features of the crops
(mean, standard deviation, percentiles): they do not change across an antiphase boundary or a
rotated grain, which the lattice-sensitive feature blocks do not survive exactly.

A brightness gradient across one material (thickness changing over the field of view) also makes
two masks' means differ. :class:`StepTest` tells the two apart where two groups meet: a material
boundary is a *step*, so crops on either side close to where they meet differ as much as the
whole groups do; along a gradient, close crops differ only a little. Two adjacent groups that
fail the whole-group test are still one material when the near-boundary difference, projected on
the whole-group difference, is less than ``max_ratio`` of it with confidence: the ratio plus
:data:`STEP_CONFIDENCE` standard errors (from the spread of the near-boundary crops). A few noisy
crops near a faint step (materials a few per cent apart) prove no gradient, so the whole-group
test decides there.

A *nested* group, whose grid crops lie almost all inside the other group's masks too
(:meth:`StepTest.nested`: SAM's mask of a part inside its mask of the whole), has no crops of its
own beside the other, so the step test cannot speak for it. The other group's masks claim its
pixels, so it is taken for the same material unless their separation reaches ``NESTED_T2_FACTOR``
times the threshold: a t statistic between two samples of one region, half of them shared, has
heavy tails (on tuning seeds 200..259, d2 and d3, nested pairs of one material reached 10.9).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samiam.booster.crops import CropGrid

STEP_CONFIDENCE = 2.0
"""Standard errors the step ratio must stay below ``max_ratio`` by for a boundary to count as a gradient."""
NESTED_SHARE = 0.8
"""A group is nested in another when at least this fraction of its grid crops is the other's too."""
NESTED_T2_FACTOR = 4.0
"""A nested group is another material only when its separation is this many times the threshold."""


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over columns of the squared Welch t statistic between ``a: (Na, F)`` and ``b: (Nb, F)``
    (Na, Nb >= 2). A column constant in both groups counts 0 when the two constants are equal and
    infinity when they differ."""
    diff = a.mean(axis=0) - b.mean(axis=0)
    se2 = a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = np.where(se2 > 0, diff ** 2 / se2, np.where(diff == 0, 0.0, np.inf))
    return float(t2.mean())


@dataclass(frozen=True)
class StepTest:
    """The step test across the boundary of two groups of masks (module docstring).

    grid: every grid crop of the masks (:func:`samiam.booster.crops.crop_grid`), with
    features: (C, F) float, one row per crop of ``grid.boxes``.
    max_ratio: near-boundary difference / whole-group difference below which it is a gradient.
    min_crops: crops each group needs near the other for the two to count as adjacent (>= 2).
    """

    grid: CropGrid
    features: np.ndarray
    max_ratio: float
    min_crops: int

    def same(self, a: list[int], b: list[int]) -> bool:
        """True when the groups of masks ``a`` and ``b`` are adjacent and show no step where they
        meet; False when they show one or do not meet (then only the whole-group test speaks)."""
        owned_a, owned_b = self.grid.owned[a].any(axis=0), self.grid.owned[b].any(axis=0)
        only_a, only_b = owned_a & ~owned_b, owned_b & ~owned_a
        near_a = only_a & self.grid.near[b].any(axis=0)
        near_b = only_b & self.grid.near[a].any(axis=0)
        if min(near_a.sum(), near_b.sum()) < self.min_crops:
            return False
        ratio, error = step_ratio(self.features[near_a], self.features[near_b],
                                  self.features[only_a], self.features[only_b])
        return ratio + STEP_CONFIDENCE * error < self.max_ratio

    def nested(self, a: list[int], b: list[int]) -> bool:
        """True when at least :data:`NESTED_SHARE` of the grid crops of the groups of masks ``a``
        or ``b`` (the one with fewer crops) are the other group's crops too."""
        owned_a, owned_b = self.grid.owned[a].any(axis=0), self.grid.owned[b].any(axis=0)
        fewer = min(owned_a.sum(), owned_b.sum())
        return bool(fewer > 0 and (owned_a & owned_b).sum() >= NESTED_SHARE * fewer)


def step_ratio(near_a: np.ndarray, near_b: np.ndarray, all_a: np.ndarray,
               all_b: np.ndarray) -> tuple[float, float]:
    """Difference of the means of ``near_a: (Na, F)`` and ``near_b: (Nb, F)`` projected on the
    difference of the means of ``all_a: (Ma, F)`` and ``all_b: (Mb, F)``, as a fraction of the
    latter, each column in units of its pooled within-group standard deviation (over ``all_*``),
    and the standard error of that fraction (from the spread of the near rows' projections).
    About 1 for a step between a and b, near 0 for a smooth gradient; ``(inf, inf)`` when the
    whole groups do not differ at all."""
    spread = np.sqrt((all_a.var(axis=0) + all_b.var(axis=0)) / 2)
    scale = np.where(spread > 0, spread, 1.0)
    whole = (all_a.mean(axis=0) - all_b.mean(axis=0)) / scale
    norm = float(whole @ whole)
    if norm <= 0:
        return float("inf"), float("inf")
    projected_a = (near_a / scale) @ whole / norm
    projected_b = (near_b / scale) @ whole / norm
    error = np.sqrt(projected_a.var(ddof=1) / len(near_a) + projected_b.var(ddof=1) / len(near_b))
    return float(projected_a.mean() - projected_b.mean()), float(error)


def group_masks(features: np.ndarray, owner: np.ndarray, masks: np.ndarray, threshold: float,
                max_groups: int, step: StepTest | None = None) -> np.ndarray:
    """Agglomerate ``masks: (G,) int`` (mask indices, each owning at least two rows) by the
    separation of their crops.

    features: (M, F) float, one row per crop; owner: (M,) int, the mask of each row.
    Returns ``(G,) int64`` group labels 0..n_groups-1, numbered by first appearance in ``masks``.
    Two groups are *alike* when their separation is below ``threshold`` or, given ``step``, when
    :meth:`StepTest.same` says so or one is nested in the other (:meth:`StepTest.nested`) and
    their separation is below :data:`NESTED_T2_FACTOR` x ``threshold``. The closest alike pair is merged first, while any is left;
    then the closest pairs while there are more than ``max_groups`` groups.
    """
    members = [[int(m)] for m in masks]
    rows = [features[owner == m] for m in masks]
    n = len(members)
    distance = np.full((n, n), np.inf)
    alike = np.zeros((n, n), bool)

    def compare(i: int, j: int) -> None:
        distance[i, j] = distance[j, i] = separation(rows[i], rows[j])
        alike[i, j] = alike[j, i] = bool(distance[i, j] < threshold or (step is not None and (
            step.same(members[i], members[j]) or (distance[i, j] < NESTED_T2_FACTOR * threshold
                                                  and step.nested(members[i], members[j])))))

    for i in range(n):
        for j in range(i + 1, n):
            compare(i, j)
    alive = np.ones(n, bool)
    while alive.sum() > 1:
        pairs = alive[:, None] & alive[None, :] & ~np.eye(n, dtype=bool)
        if (pairs & alike).any():
            pairs &= alike
        elif alive.sum() <= max_groups:
            break
        masked = np.where(pairs, np.minimum(distance, np.finfo(float).max), np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        i, j = min(i, j), max(i, j)
        members[i] += members[j]
        rows[i] = np.concatenate([rows[i], rows[j]])
        alive[j] = False
        for other in np.flatnonzero(alive):
            if other != i:
                compare(i, other)
    group_of = {m: g for g, i in enumerate(np.flatnonzero(alive)) for m in members[i]}
    return np.array([group_of[int(m)] for m in masks], np.int64)


def count_late_groups(features: np.ndarray, owner: np.ndarray, masks: np.ndarray, groups: np.ndarray,
                      late: np.ndarray, threshold: float, step: StepTest | None = None) -> int:
    """How many of the masks ``late: (L,) int``, each with too few crops to found a group in
    :func:`group_masks` (at least two), show a material none of the groups shows.

    features: (M, F) float, one row per crop; owner: (M,) int, the mask of each row; masks:
    (G,) int, the founders, and groups: (G,) int, their groups (from :func:`group_masks`). A late
    mask, largest number of crops first, is a new group when its separation from every group
    (founders' and earlier late ones') is at least ``threshold`` and, given ``step``, no group it
    meets is the same material by :meth:`StepTest.same` (a gradient, not a step). A material with only small masks (a narrow layer, crops of
    which are few) is then counted, where :func:`group_masks` left it out.
    """
    members = [list(masks[groups == g]) for g in range(int(groups.max()) + 1)]
    rows = [features[np.isin(owner, group)] for group in members]
    order = sorted(late, key=lambda m: -int((owner == m).sum()))
    added = 0
    for m in order:
        mine = features[owner == m]
        if all(separation(mine, other) >= threshold and not (step is not None and step.same([int(m)], group))
               for other, group in zip(rows, members)):
            members.append([int(m)])
            rows.append(mine)
            added += 1
    return added
