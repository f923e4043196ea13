"""Tune the separation K estimator (``merging.k_estimator="separation"``: ``same_material_t2``, ``min_group_crops``, ``step_ratio``, ``step_reach``).

On *tuning* scenes (seeds from ``--first-seed``, 100 by default, so that ``bench/quality.py``'s
seeds 0..N stay unseen): simulated SAM+ proposals (:func:`samiam.synth.simulate_sam_proposals`)
go through mask removal and then :func:`samiam.booster.merge_masks` with K estimated, for a grid
of the two settings. Per difficulty it prints how often the number of materials found equals the
true one ("K right"), or the number of materials that received any proposal ("K vis right": a
narrow layer SAM missed cannot be found), and the mean IoU in % (:func:`samiam.metrics.score_image`).
The last column is the number of materials found on ``samples/lsfo_lattice_haadf.jpg`` (one
lattice with a strong thickness gradient: 1 is right) from the classical proposer's masks.

    .venv/bin/python bench/k_estimation.py [--seeds 8] [--size 512] [--t2 3 4 5 6 8] [--min-crops 3 5]
        [--step-ratio 0.5 0.7] [--step-reach 0.5 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
from pathlib import Path

import numpy as np
from PIL import Image

from samiam.booster import merge_masks, remove_masks
from samiam.booster.embedders import make_embedder
from samiam.io import load_micrograph
from samiam.metrics import score_image
from samiam.proposals import make_proposer
from samiam.settings import Settings
from samiam.synth import DIFFICULTIES, generate_scene, simulate_sam_proposals


def prepared(seed: int, difficulty: int, size: int, settings: Settings):
    """(grey as samiam reads the 8-bit file, kept proposals, ground truth, materials proposed)."""
    scene = generate_scene(seed, difficulty, size)
    buffer = io.BytesIO()
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    grey = load_micrograph(buffer.getvalue()).grey
    proposals = simulate_sam_proposals(scene, seed=seed)
    masks = proposals[remove_masks(proposals, grey, settings.removal).keep]
    overlap = (masks[:, None] & scene.materials[None]).sum(axis=(2, 3))
    visible = len(np.unique(overlap.argmax(axis=1)[overlap.max(axis=1) > 0]))
    return grey, masks, scene.materials, visible


REAL_SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "lsfo_lattice_haadf.jpg"


def real_sample(settings: Settings):
    """(grey, kept classical proposals) of the one-material LSFO sample."""
    micrograph = load_micrograph(REAL_SAMPLE.read_bytes())
    proposals = make_proposer(dataclasses.replace(settings.proposals, proposer="classical")).propose(micrograph)
    return micrograph.grey, proposals.masks[remove_masks(proposals.masks, micrograph.grey, settings.removal).keep]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="scenes per difficulty")
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--t2", type=float, nargs="+", default=[3.0, 4.0, 5.0, 6.0, 8.0])
    parser.add_argument("--min-crops", type=int, nargs="+", default=[2, 3, 5, 8])
    parser.add_argument("--step-ratio", type=float, nargs="+", default=[Settings().merging.step_ratio])
    parser.add_argument("--step-reach", type=float, nargs="+", default=[Settings().merging.step_reach])
    args = parser.parse_args()

    base = dataclasses.replace(Settings().merging, k_estimator="separation")
    embedder = make_embedder(base)
    grid = list(itertools.product(args.t2, args.min_crops, args.step_ratio, args.step_reach))
    cells = {cell: dataclasses.replace(base, same_material_t2=cell[0], min_group_crops=cell[1],
                                       step_ratio=cell[2], step_reach=cell[3]) for cell in grid}
    results = {(cell, d): [] for cell in grid for d in DIFFICULTIES}
    real_grey, real_masks = real_sample(Settings())
    real = {cell: len(merge_masks(real_grey, real_masks, np.ones(len(real_masks), np.float32),
                                  cells[cell], embedder).materials) for cell in grid}
    for difficulty in DIFFICULTIES:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            grey, masks, truth, visible = prepared(seed, difficulty, args.size, Settings())
            scores = np.ones(len(masks), np.float32)
            for cell in grid:
                merged = merge_masks(grey, masks, scores, cells[cell], embedder)
                found = len(merged.materials)
                results[cell, difficulty].append(
                    (found == len(truth), found == visible, score_image(merged.materials, truth).iou))

    print(f"{args.seeds} tuning scenes per difficulty (seeds {args.first_seed}..), {args.size} px\n")
    print("| same_material_t2 | min_group_crops | step_ratio | step_reach | " + " | ".join(
        f"d{d} K right | d{d} K vis right | d{d} mIoU" for d in DIFFICULTIES) + " | mean mIoU | LSFO K |")
    print("|---|---|---|---|" + "---|---|---|" * len(DIFFICULTIES) + "---|---|")
    for cell in grid:
        columns, ious = [], []
        for d in DIFFICULTIES:
            right, right_visible, iou = np.mean(results[cell, d], axis=0)
            columns += [f"{right:.2f}", f"{right_visible:.2f}", f"{iou:.1f}"]
            ious.append(iou)
        print(f"| {cell[0]:g} | {cell[1]} | {cell[2]:g} | {cell[3]:g} | " + " | ".join(columns)
              + f" | {np.mean(ious):.1f} | {real[cell]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
