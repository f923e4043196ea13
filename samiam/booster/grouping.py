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
"""

from __future__ import annotations

import numpy as np


def separation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over columns of the squared Welch t statistic between ``a: (Na, F)`` and ``b: (Nb, F)``
    (Na, Nb >= 2). A column constant in both groups counts 0 when the two constants are equal and
    infinity when they differ."""
    diff = a.mean(axis=0) - b.mean(axis=0)
    se2 = a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        t2 = np.where(se2 > 0, diff ** 2 / se2, np.where(diff == 0, 0.0, np.inf))
    return float(t2.mean())


def group_masks(features: np.ndarray, owner: np.ndarray, masks: np.ndarray, threshold: float,
                max_groups: int) -> np.ndarray:
    """Agglomerate ``masks: (G,) int`` (mask indices, each owning at least two rows) by the
    separation of their crops.

    features: (M, F) float, one row per crop; owner: (M,) int, the mask of each row.
    Returns ``(G,) int64`` group labels 0..n_groups-1, numbered by first appearance in ``masks``.
    Groups are merged, closest first, while the closest pair is separated by less than
    ``threshold`` or there are more than ``max_groups`` groups.
    """
    members = [[int(m)] for m in masks]
    rows = [features[owner == m] for m in masks]
    n = len(members)
    distance = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(i + 1, n):
            distance[i, j] = distance[j, i] = separation(rows[i], rows[j])
    alive = np.ones(n, bool)
    while alive.sum() > 1:
        masked = np.where(alive[:, None] & alive[None, :], distance, np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        if masked[i, j] >= threshold and alive.sum() <= max_groups:
            break
        i, j = min(i, j), max(i, j)
        members[i] += members[j]
        rows[i] = np.concatenate([rows[i], rows[j]])
        alive[j] = False
        distance[j, :] = distance[:, j] = np.inf
        for other in np.flatnonzero(alive):
            if other != i:
                distance[i, other] = distance[other, i] = separation(rows[i], rows[other])
    group_of = {m: g for g, i in enumerate(np.flatnonzero(alive)) for m in members[i]}
    return np.array([group_of[int(m)] for m in masks], np.int64)
