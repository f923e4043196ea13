"""Which weight-free texture embedder separates materials best? Picks ``"default"``.

For synthetic cross-section micrographs (:func:`samiam.synth.generate_scene`, difficulty 1-3,
2-4 materials each): crops are drawn from the ground-truth material masks exactly as the merging
step draws them, embedded, standardised like the merging step does, and clustered by KMeans with
the true K. Accuracy = fraction of crops in the right cluster after Hungarian matching of clusters
to materials (:func:`scipy.optimize.linear_sum_assignment`).

The second table sets ``merging.min_silhouette``: the K estimator (best silhouette over
k = 2..max_materials, K = 1 below the threshold) runs on the crops of each whole scene (right
answer: its number of materials) and of each of its materials alone (right answer: 1; materials
with too few crops to score are skipped); it gives
the fraction right at the current threshold and at the best threshold of a sweep.

    .venv/bin/python bench/embedder_choice.py [--seeds 6] [--sizes 512 1024]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from samiam.booster.crops import sample_crops
from samiam.booster.embedders import EMBEDDERS, make_embedder
from samiam.booster.merging import (
    _embed_boxes,
    _fit_kmeans,
    _standardise,
    best_silhouette,
    crop_side,
)
from samiam.settings import MergingSettings
from samiam.synth import DIFFICULTIES, generate_scene

WEIGHT_FREE = [name for name in EMBEDDERS if name != "resnet18"]


def crop_accuracy(truth: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of crops whose cluster maps to their material under the best one-to-one matching."""
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (truth, labels), 1)
    rows, cols = linear_sum_assignment(-confusion)
    return confusion[rows, cols].sum() / len(truth)


def features_of(image: np.ndarray, masks: np.ndarray, settings: MergingSettings, embedder):
    """Standardised crop features of ``masks`` and each crop's mask index."""
    side = crop_side(settings, *image.shape)
    sample = sample_crops(masks, side, settings.crops_per_mask, settings.crop_inside,
                          np.random.default_rng(settings.seed))
    raw = _embed_boxes(image, sample.boxes, embedder)
    if len(raw) == 0:  # a material too narrow for any crop
        return raw, sample.owner
    return _standardise(raw, np.ones(len(raw), bool), embedder.blocks), sample.owner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="scenes per difficulty and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="scene sides in px")
    parser.add_argument("--crops", type=int, default=30,
                        help="crops per material (many, since a material is one mask here)")
    args = parser.parse_args()

    base = MergingSettings(crops_per_mask=args.crops)
    accuracy = {(name, size, d): [] for name in WEIGHT_FREE for size in args.sizes for d in DIFFICULTIES}
    estimates = {name: [] for name in WEIGHT_FREE}  # (true K, best k, best silhouette) per case
    seconds = {name: 0.0 for name in WEIGHT_FREE}
    for size in args.sizes:
        for difficulty in DIFFICULTIES:
            for seed in range(args.seeds):
                scene = generate_scene(seed, difficulty, size=size)
                k = len(scene.materials)
                for name in WEIGHT_FREE:
                    settings = dataclasses.replace(base, embedder=name)
                    embedder = make_embedder(settings)
                    started = time.perf_counter()
                    features, owner = features_of(scene.image, scene.materials, settings, embedder)
                    seconds[name] += time.perf_counter() - started
                    labels = _fit_kmeans(features, k, settings.seed).labels_
                    accuracy[name, size, difficulty].append(crop_accuracy(owner, labels, k))
                    cases = [(k, features)] + [(1, features_of(scene.image, m[None], settings, embedder)[0])
                                               for m in scene.materials]
                    estimates[name] += [(truth, *best_silhouette(f, settings.max_materials, settings.seed))
                                        for truth, f in cases if len(f) > settings.max_materials]

    n_scenes = len(args.sizes) * len(DIFFICULTIES) * args.seeds
    print(f"{n_scenes} scenes ({args.seeds} per difficulty and size), crop side "
          + ", ".join(f"{crop_side(base, s, s)} px at {s} px" for s in args.sizes)
          + f", up to {args.crops} crops per material; crop accuracy with the true K\n")
    columns = [(size, d) for size in args.sizes for d in DIFFICULTIES]
    print("| embedder | " + " | ".join(f"{size} px d{d}" for size, d in columns)
          + " | mean | embed s/scene |")
    print("|---|" + "---|" * (len(columns) + 2))
    means = {}
    for name in WEIGHT_FREE:
        per = [np.mean(accuracy[name, size, d]) for size, d in columns]
        means[name] = float(np.mean(per))
        print(f"| {name} | " + " | ".join(f"{p:.3f}" for p in per)
              + f" | {means[name]:.3f} | {seconds[name] / n_scenes:.3f} |")
    print(f"\nbest by mean accuracy: {max(means, key=means.get)}")

    print(f"\nK estimation (k = 2..{base.max_materials} by silhouette, K = 1 below the threshold) over "
          "each whole scene and each of its materials alone\n")
    print(f"| embedder | right at min_silhouette={base.min_silhouette} | best threshold | right there |")
    print("|---|---|---|---|")
    thresholds = np.round(np.arange(0.2, 0.9, 0.025), 3)
    for name in WEIGHT_FREE:
        truth, best_k, score = (np.array(column) for column in zip(*estimates[name]))
        right = [np.mean(np.where(score >= t, best_k, 1) == truth) for t in thresholds]
        current = np.mean(np.where(score >= base.min_silhouette, best_k, 1) == truth)
        print(f"| {name} | {current:.3f} | {thresholds[int(np.argmax(right))]:.3f} | {max(right):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
