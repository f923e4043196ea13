"""Plain, obviously correct mask removal (test-only oracle for samiam.booster.removal).

Follows the authors' loop structure (pnnl/SAMIAm): every ordered pair (parent i, child j),
i != j, full-resolution ``np.logical_and(...).sum()``, Python loops. Shares nothing with the
fast path except the settings.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.ndimage import binary_dilation

from samiam.settings import RemovalSettings

_DEFAULTS = RemovalSettings()


def oracle_remove(masks: np.ndarray, settings: RemovalSettings = _DEFAULTS, grey: np.ndarray | None = None) -> list:
    """masks: (N, H, W) bool, grey: (H, W) float (None: a constant image) -> list of N reasons
    (None = kept)."""
    n = len(masks)
    height, width = masks.shape[1:] if masks.ndim == 3 else (0, 0)
    island_pixels = settings.island_area * (height * width) / 1024 ** 2
    ring = max(1, round(settings.island_ring * (height * width) ** 0.5 / 1024))
    areas = [int(np.sum(m)) for m in masks]
    flags = [set() for _ in range(n)]
    is_child = [False] * n
    covered = [0] * n
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            inter = int(np.logical_and(masks[i], masks[j]).sum())
            if inter == 0:
                continue
            of_child = inter / areas[j]
            of_parent = inter / areas[i]
            j_smaller = areas[j] < areas[i] or (areas[j] == areas[i] and j > i)
            if of_child > settings.redundant_overlap and of_parent > settings.redundant_overlap and j_smaller:
                flags[j].add("redundant")
            if of_child > settings.child_inside and of_parent < settings.child_inside:
                is_child[j] = True
                if of_parent < settings.tiny_child:
                    flags[j].add("tiny_child")
                if of_parent > settings.tiny_child:
                    covered[i] += inter
    for i in range(n):
        if areas[i] == 0:
            flags[i].add("empty")
        elif covered[i] / areas[i] > settings.compound_covered:
            flags[i].add("compound")
        if 0 < areas[i] < island_pixels and not is_child[i]:
            band = binary_dilation(masks[i], np.ones((2 * ring + 1, 2 * ring + 1), bool)) & ~masks[i]
            others = np.zeros_like(masks[i])
            for j in range(n):
                if j != i:
                    others |= masks[j]
            surrounded = (band & others).sum() / band.sum() if band.sum() else 0.0
            if surrounded < settings.island_surrounded:
                flags[i].add("island")
    if grey is not None:
        candidates = [("tiny_child" in f or "island" in f) and "redundant" not in f for f in flags]
        for i, population in enumerate(oracle_populations(masks, grey, candidates, ring, settings)):
            if population >= 0:
                flags[i] -= {"tiny_child", "island"}
    priority = ["empty", "redundant", "tiny_child", "compound", "island"]
    return [next((r for r in priority if r in f), None) for f in flags]


def oracle_populations(masks: np.ndarray, grey: np.ndarray, candidates: list, ring: int,
                       settings: RemovalSettings = _DEFAULTS) -> list:
    """The population rule, plainly: each candidate's contrast against its ring (other candidates
    left out) in the ring's robust noise (at least the pixel noise of horizontal neighbours),
    then per sign the distinct, alike candidates -> list of N population numbers (-1: none)."""
    n = len(masks)
    union = np.zeros(grey.shape, bool)
    for i in range(n):
        if candidates[i]:
            union |= masks[i]
    floor = 1.4826 * np.median(np.abs(grey[:, 1:] - grey[:, :-1])) / np.sqrt(2.0)
    contrast = [0.0] * n
    for i in range(n):
        if not candidates[i]:
            continue
        band = binary_dilation(masks[i], np.ones((2 * ring + 1, 2 * ring + 1), bool)) & ~masks[i] & ~union
        if not band.any():
            continue
        around = grey[band]
        centre = np.median(around)
        step = grey[masks[i]].mean() - centre
        noise = max(1.4826 * np.median(np.abs(around - centre)), floor)
        if noise > 0:
            contrast[i] = step / noise
        elif step != 0:
            contrast[i] = np.inf if step > 0 else -np.inf
    population = [-1] * n
    number = 0
    for sign in (1, -1):
        distinct = [i for i in range(n) if candidates[i] and sign * contrast[i] >= settings.population_contrast]
        if not distinct:
            continue
        typical = np.median([sign * contrast[i] for i in distinct])
        alike = [i for i in distinct if sign * contrast[i] <= settings.population_spread * typical]
        if len(alike) >= settings.population_members:
            for i in alike:
                population[i] = number
            number += 1
    return population


def oracle_pair_seconds(masks: np.ndarray, pairs: int, seed: int = 0) -> float:
    """Mean seconds the oracle spends on one ordered pair, measured on ``pairs`` random pairs."""
    rng = np.random.default_rng(seed)
    n = len(masks)
    picks = [tuple(rng.choice(n, 2, replace=False)) for _ in range(pairs)]
    areas = [int(np.sum(m)) for m in masks]
    started = time.perf_counter()
    for i, j in picks:
        inter = int(np.logical_and(masks[i], masks[j]).sum())
        if inter:
            _ = (inter / areas[j], inter / areas[i])
    return (time.perf_counter() - started) / pairs
