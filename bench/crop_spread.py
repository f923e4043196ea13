"""How much a crop's intensity statistics vary within one material, at 1x and 2x magnification.

On the narrow-field scenes of ``bench/scale.py`` (stack in the centre half; 2x shows the centre
half at the same pixel count), every grid crop of the booster's side lying inside one true
material (``samiam.booster.crops.crop_grid``) is described by the intensity features the K
estimator tests (mean, standard deviation, percentiles), once plain (every pixel weighs the
same) and once under the Hann window that ``samiam.booster.embedders.intensity_features`` uses.
Per magnification and feature kind it prints

* ``mean spread``: median over materials of the standard deviation of the crop mean, in % of
  that mean (the lattice's phase in the crop moves a plain mean; noise moves both);
* ``d2``: for each pair of neighbouring materials, the squared difference of their crops' mean
  features in pooled within-material standard deviations, averaged over the features (what one
  crop pair adds to the t statistic of ``samiam.booster.grouping.separation``): median and 10th
  percentile over the pairs.

    python bench/crop_spread.py --first-seed 100 --n 16
"""

from __future__ import annotations

import argparse
from itertools import pairwise

import numpy as np

from samiam.booster.crops import crop_grid, cut_crops
from samiam.booster.embedders import INTENSITY_PERCENTILES, intensity_features
from samiam.booster.merging import crop_side
from samiam.settings import Settings
from samiam.synth import generate_scene

MAGNIFICATIONS = (1, 2)
MIN_CROPS = 5
"""Materials with fewer crops inside are left out (as ``merging.min_group_crops``)."""


def plain_intensity_features(crops: np.ndarray) -> np.ndarray:
    """(M, S, S) -> (M, 2 + len(INTENSITY_PERCENTILES)): every pixel weighing the same."""
    flat = crops.reshape(len(crops), -1)
    return np.column_stack([flat.mean(axis=1), flat.std(axis=1),
                            np.percentile(flat, INTENSITY_PERCENTILES, axis=1).T])


KINDS = {"plain": plain_intensity_features, "windowed": intensity_features}


def material_features(seed: int, difficulty: int, size: int, magnification: int) -> dict[str, list[np.ndarray]]:
    """Per feature kind, the ``(n, F)`` features of the grid crops inside each material (top to
    bottom, those with at least :data:`MIN_CROPS`) of one narrow-field scene."""
    scene = generate_scene(seed=seed, difficulty=difficulty, size=size, layers_within=0.5, zoom=magnification)
    side = crop_side(Settings().merging, size, size)
    grid = crop_grid(scene.materials, side, Settings().merging.crop_inside, 0)
    crops = cut_crops(scene.image, grid.boxes)
    inside = [owned for owned in grid.owned if owned.sum() >= MIN_CROPS]
    return {kind: [features[owned] for owned in inside] for kind, features in
            ((kind, compute(crops)) for kind, compute in KINDS.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--n", type=int, default=16, help="scenes per difficulty class")
    parser.add_argument("--difficulties", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    spread = {(m, kind): [] for m in MAGNIFICATIONS for kind in KINDS}
    d2 = {(m, kind): [] for m in MAGNIFICATIONS for kind in KINDS}
    for difficulty in args.difficulties:
        for seed in range(args.first_seed, args.first_seed + args.n):
            for m in MAGNIFICATIONS:
                for kind, materials in material_features(seed, difficulty, args.size, m).items():
                    spread[m, kind] += [100 * rows[:, 0].std(ddof=1) / rows[:, 0].mean() for rows in materials]
                    for a, b in pairwise(materials):
                        pooled = np.sqrt((a.var(axis=0, ddof=1) + b.var(axis=0, ddof=1)) / 2)
                        d2[m, kind].append(float(np.mean(((a.mean(axis=0) - b.mean(axis=0)) / pooled) ** 2)))
    print(f"narrow field, classes {args.difficulties}, seeds {args.first_seed}-{args.first_seed + args.n - 1}, "
          f"{args.size} px, crop {crop_side(Settings().merging, args.size, args.size)} px\n")
    print("| mag | features | mean spread % | d2 median | d2 p10 | pairs |\n|---|---|---|---|---|---|")
    for (m, kind), values in spread.items():
        pairs = np.array(d2[m, kind])
        print(f"| {m}x | {kind} | {np.median(values):.2f} | {np.median(pairs):.1f} | "
              f"{np.percentile(pairs, 10):.1f} | {len(pairs)} |")


if __name__ == "__main__":
    main()
