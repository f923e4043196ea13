"""Which weight-free texture embedder separates materials best? Picks ``"default"``.

For synthetic cross-section micrographs (:func:`samiam.synth.generate_scene`, difficulty 1-3,
2-4 materials each): crops are drawn from the ground-truth material masks exactly as the merging
step draws them, embedded, standardised like the merging step does, and clustered by KMeans with
the true K. Accuracy = fraction of crops in the right cluster after Hungarian matching of clusters
to materials (:func:`scipy.optimize.linear_sum_assignment`).

The second table helps set ``merging.min_silhouette``: for each embedder, the best silhouette
score (k = 2..max_materials) of the crops of a whole multi-material scene and of each of its
single materials alone (where the right answer is K = 1), and how often the estimator with the
current threshold gets K right.

    .venv/bin/python bench/embedder_choice.py [--seeds 8] [--size 512]
"""

from __future__ import annotations

import argparse
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
    estimate_materials,
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
    return _standardise(raw, np.ones(len(raw), bool), embedder.blocks), sample.owner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="scenes per difficulty")
    parser.add_argument("--size", type=int, default=512, help="scene side in px")
    parser.add_argument("--crops", type=int, default=30,
                        help="crops per material (many, since a material is one mask here)")
    args = parser.parse_args()

    base = MergingSettings(crops_per_mask=args.crops)
    scenes = [generate_scene(seed, difficulty, size=args.size)
              for difficulty in DIFFICULTIES for seed in range(args.seeds)]
    accuracy = {name: {d: [] for d in DIFFICULTIES} for name in WEIGHT_FREE}
    silhouettes = {name: {"multi": [], "single": []} for name in WEIGHT_FREE}
    k_right = {name: [] for name in WEIGHT_FREE}
    seconds = {name: 0.0 for name in WEIGHT_FREE}
    for scene in scenes:
        k = len(scene.materials)
        for name in WEIGHT_FREE:
            settings = MergingSettings(**{**base.__dict__, "embedder": name})
            embedder = make_embedder(settings)
            started = time.perf_counter()
            features, owner = features_of(scene.image, scene.materials, settings, embedder)
            seconds[name] += time.perf_counter() - started
            labels = _fit_kmeans(features, k, settings.seed).labels_
            accuracy[name][scene.difficulty].append(crop_accuracy(owner, labels, k))
            silhouettes[name]["multi"].append(best_silhouette(features, settings.max_materials,
                                                              settings.seed)[1])
            k_right[name].append(estimate_materials(features, k, settings) == k)
            for material in scene.materials:
                single, _ = features_of(scene.image, material[None], settings, embedder)
                silhouettes[name]["single"].append(best_silhouette(single, settings.max_materials,
                                                                   settings.seed)[1])
                k_right[name].append(estimate_materials(single, 1 + settings.max_materials, settings) == 1)

    print(f"{len(scenes)} scenes ({args.seeds} per difficulty), {args.size} px, crop side "
          f"{crop_side(base, args.size, args.size)} px, up to {args.crops} crops per material\n")
    print("| embedder | " + " | ".join(f"difficulty {d}" for d in DIFFICULTIES)
          + " | all | embed s/scene |")
    print("|---|" + "---|" * (len(DIFFICULTIES) + 2))
    for name in WEIGHT_FREE:
        per = [np.mean(accuracy[name][d]) for d in DIFFICULTIES]
        overall = np.mean([a for d in DIFFICULTIES for a in accuracy[name][d]])
        print(f"| {name} | " + " | ".join(f"{p:.3f}" for p in per)
              + f" | {overall:.3f} | {seconds[name] / len(scenes):.2f} |")

    print(f"\nbest silhouette (k=2..{base.max_materials}); K estimated right with min_silhouette="
          f"{base.min_silhouette}\n")
    print("| embedder | multi-material median (min) | single-material median (max) | K right |")
    print("|---|---|---|---|")
    for name in WEIGHT_FREE:
        multi, single = np.array(silhouettes[name]["multi"]), np.array(silhouettes[name]["single"])
        print(f"| {name} | {np.median(multi):.3f} ({multi.min():.3f}) | {np.median(single):.3f} "
              f"({single.max():.3f}) | {np.mean(k_right[name]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
