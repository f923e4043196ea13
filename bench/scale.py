"""The booster's quality at two magnifications: the fixed-pixel rule against the physical one.

Each synthetic scene (``samiam.synth.generate_scene``) is rendered twice at the same size: as
drawn, and its centre at 2x the magnification (``zoom=2``: lattice periods twice as many px).
Both go through the booster with the booster's lengths (crop side, island area and ring) sized by

* ``reference``: px at the 1024 px reference side scaled with the image size (the rule before
  ``samiam.scale``; crops hold half as many lattice cells at 2x);
* ``physical, file``: ``merging.crop_nm`` etc. through the pixel size a file would state
  (``Scene.pixel_nm``);
* ``physical, lattice``: the same through the lattice period estimated from the power spectrum
  (no pixel size; ``image.period_nm``), falling back to ``reference`` without a lattice;

for two proposers: SAM+ proposals *simulated* from the ground truth (``simulate_sam_proposals``,
no checkpoint here) and the weight-free classical proposer (its proposals are made once per image
and boosted under each rule, K estimated as for the classical proposer). Scores as
``bench/quality.py``: per-image metrics of ``samiam.metrics`` against the exact ground truth.

    python bench/scale.py --n 4 --size 512 --write    # replaces the "scale" section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
ZOOMS = (1, 2)
RULES = ("reference", "physical, file", "physical, lattice")
PROPOSERS = ("sim-SAM", "classical")
SHOWN = ("iou", "f1", "boundary_iou", "pq")


def score_one(job: tuple[int, int, int, int]) -> list[dict]:
    """Every rule and proposer on one scene at one zoom: rows of metrics, K and the crop side."""
    difficulty, seed, size, zoom = job
    from PIL import Image

    from samiam.io import load_micrograph
    from samiam.metrics import score_image
    from samiam.pipeline import Engine
    from samiam.settings import Settings
    from samiam.synth import generate_scene, simulate_sam_proposals

    scene = generate_scene(seed=seed, difficulty=difficulty, size=size, zoom=zoom)
    buffer = io.BytesIO()
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    plain = load_micrograph(buffer.getvalue())  # the 8-bit file a user would give samiam
    calibrated = replace(plain, pixel_size=scene.pixel_nm, pixel_unit="nm")
    base = Settings.from_env().replace({"proposals.proposer": "classical"})
    physical = base.replace({"image.scale": "physical"})
    runs = {"reference": (base.replace({"image.scale": "reference"}), plain),
            "physical, file": (physical, calibrated), "physical, lattice": (physical, plain)}
    proposals = {"sim-SAM": (simulate_sam_proposals(scene, seed=seed), {}),
                 "classical": (Engine(base).proposer.propose(plain).masks,
                               {"merging.k_estimator": "separation_all"})}
    rows = []
    for proposer, (masks, overrides) in proposals.items():
        for rule, (settings, micrograph) in runs.items():
            settings = settings.replace(overrides)
            result = Engine(settings).boost(micrograph, masks, settings=settings)
            view = shared_view(size, zoom)
            rows.append({"proposer": proposer, "rule": rule, "zoom": zoom, "difficulty": difficulty,
                         "name": f"d{difficulty}_s{seed:04d}", "true_k": len(scene.names),
                         "found_k": len(result.materials), "crop_px": crop_px(result),
                         "scale": result.scale.source if result.scale else "none",
                         "shared_iou": score_image(result.materials[view], scene.materials[view]).iou,
                         **score_image(result.materials, scene.materials).as_dict()})
    return rows


def shared_view(size: int, zoom: int) -> tuple[slice, slice, slice]:
    """Index of a ``(K, size, size)`` mask stack at ``zoom`` that keeps the field of view of the
    image at the largest zoom (at 1x: the centre half of each side)."""
    margin = round(size * (1 - zoom / max(ZOOMS)) / 2)
    return slice(None), slice(margin, size - margin), slice(margin, size - margin)


def crop_px(result) -> int:
    """Crop side in px the booster used on ``result``'s image."""
    from samiam.booster.merging import crop_side

    return crop_side(result.settings.merging, *result.proposals.shape[1:])


def run(n: int, size: int, workers: int) -> list[dict]:
    jobs = [(d, seed, size, zoom) for d in (1, 2, 3) for seed in range(n) for zoom in ZOOMS]
    with ProcessPoolExecutor(workers) as pool:
        return [row for rows in pool.map(score_one, jobs) for row in rows]


def report(rows: list[dict], n: int, size: int, seconds: float, workers: int) -> str:
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on the dev box ({platform.node() or 'this machine'}, "
              f"2 shared CPU cores, no GPU) with `python bench/scale.py --n {n} --size {size} "
              f"--workers {workers} --write`: {n} scenes per difficulty class (1-3), {size}x{size}, each "
              f"at 1x and 2x zoom (the centre of the same scene at twice the magnification), "
              f"{seconds / 60:.1f} min."), "",
             ("Mean over the images of a row of the per-image metrics (docs/metrics.md), in %; "
              "`K ok`: % of images where the number of materials found is the true one; `crop`: "
              "median crop side in px; `scale`: images whose scale came from the file / the lattice / "
              "neither (reference rule)."), "",
             "| proposer | rule | zoom | mIoU | F1 | boundary IoU | PQ | K ok | crop | scale |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for proposer in PROPOSERS:
        for rule in RULES:
            for zoom in ZOOMS:
                picked = [r for r in rows if (r["proposer"], r["rule"], r["zoom"]) == (proposer, rule, zoom)]
                means = {m: float(np.mean([r[m] for r in picked])) for m in SHOWN}
                k_ok = 100 * float(np.mean([r["found_k"] == r["true_k"] for r in picked]))
                sources = [r["scale"] for r in picked]
                lines.append(
                    f"| {proposer} | {rule} | {zoom}x | {means['iou']:.1f} | {means['f1']:.1f} | "
                    f"{means['boundary_iou']:.1f} | {means['pq']:.1f} | {k_ok:.0f} | "
                    f"{int(np.median([r['crop_px'] for r in picked]))} | "
                    f"{sources.count('file')}/{sources.count('lattice')}/{sources.count('none')} |")
    lines += ["", ("mIoU change from 1x to 2x zoom on the same field of view (the 2x image against the "
                   "centre half of the 1x image's masks and ground truth: the same materials in view), "
                   "per proposer and rule, in percentage points (negative: quality drops at the higher "
                   "magnification); the last column is the mean 2x mIoU there:"), "",
              "| proposer | rule | d1 | d2 | d3 | all | 2x mIoU |", "|---|---|---|---|---|---|---|"]
    for proposer in PROPOSERS:
        for rule in RULES:
            cells = [f"{shared_iou(rows, proposer, rule, 2, d) - shared_iou(rows, proposer, rule, 1, d):+.1f}"
                     for d in (1, 2, 3, None)]
            lines.append(f"| {proposer} | {rule} | " + " | ".join(cells)
                         + f" | {shared_iou(rows, proposer, rule, 2, None):.1f} |")
    return "\n".join(lines)


def shared_iou(rows: list[dict], proposer: str, rule: str, zoom: int, difficulty: int | None) -> float:
    """Mean mIoU on the shared field of view over the rows of ``proposer``, ``rule``, ``zoom`` and
    ``difficulty`` (None: every class)."""
    return float(np.mean([r["shared_iou"] for r in rows if (r["proposer"], r["rule"], r["zoom"]) ==
                          (proposer, rule, zoom) and difficulty in (None, r["difficulty"])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="scenes per difficulty class")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--rows", type=Path, help="also write every per-image row to this JSON file")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = run(args.n, args.size, args.workers)
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1))
    text = report(rows, args.n, args.size, time.perf_counter() - started, args.workers)
    print(text)
    if args.write:
        write_section(DOCS, "scale", "Physical scale: crops at two magnifications", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
