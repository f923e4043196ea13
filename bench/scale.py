"""The booster's quality at two magnifications: the fixed-pixel rule against the physical one.

Every synthetic scene (``samiam.synth.generate_scene``, seeds from ``--first-seed``, not those
the engine was tuned on) is seen at 1x and at 2x the magnification, in two cases:

* ``narrow field``: the stack lies in the centre half of the height (``layers_within=0.5``: a lab
  zooms in on the interface) and the 2x image shows the centre half of the field at the same
  pixel count (``zoom=2``); the 1x image is scored on its centre half, the field both share;
* ``finer sampling``: the same field of view at twice the pixel count (``sampling=2``: pixel size
  halved; new noise), scored on the whole image.

Both images go through the booster with its lengths (crop side, island area and ring) sized by

* ``reference``: px at the 1024 px reference side scaled with the image size (the rule before
  ``samiam.scale``);
* ``physical, file``: ``merging.crop_nm`` etc. through the pixel size a file would state
  (``Scene.pixel_nm``);
* ``physical, lattice``: the same through the lattice period estimated from the power spectrum
  (no pixel size; ``image.period_nm``), falling back to ``reference`` without a lattice;

for two proposers: SAM+ proposals *simulated* from the ground truth (``simulate_sam_proposals``,
no checkpoint here) and the weight-free classical proposer (its proposals are made once per image
and boosted under each rule, K estimated as for the classical proposer). Scores as
``bench/quality.py``: per-image metrics of ``samiam.metrics`` against the exact ground truth; the
change from 1x to 2x is taken per scene (paired) and summarised with its spread.

    python bench/scale.py --n 16 --first-seed 200 --write   # replaces the "scale" section
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from bench_settings import bench_settings, describe
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
CLASSICAL = {"proposals.proposer": "classical"}
"""The settings every run uses: samiam's defaults (not the environment's) with the classical proposer."""
MAGNIFICATIONS = (1, 2)
CASES = {"narrow field": ({"layers_within": 0.5}, {"layers_within": 0.5, "zoom": 2}),
         "finer sampling": ({}, {"sampling": 2})}
"""Scene options of each case at 1x and at 2x."""
RULES = ("reference", "physical, file", "physical, lattice")
PROPOSERS = ("sim-SAM", "classical")


def score_one(job: tuple[str, int, int, int, int, tuple[str, ...]]) -> list[dict]:
    """Every rule and the given proposers on one scene of a case at one magnification: rows of
    metrics, K, the crop side and the mIoU on the field both magnifications share."""
    case, difficulty, seed, size, magnification, proposers = job
    started = time.perf_counter()
    from PIL import Image

    from samiam.io import load_micrograph
    from samiam.metrics import score_image
    from samiam.pipeline import Engine
    from samiam.synth import generate_scene, simulate_sam_proposals

    options = CASES[case][MAGNIFICATIONS.index(magnification)]
    scene = generate_scene(seed=seed, difficulty=difficulty, size=size, **options)
    buffer = io.BytesIO()
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    plain = load_micrograph(buffer.getvalue())  # the 8-bit file a user would give samiam
    calibrated = replace(plain, pixel_size=scene.pixel_nm, pixel_unit="nm")
    base = bench_settings(CLASSICAL)
    physical = base.replace({"image.scale": "physical"})
    runs = {"reference": (base.replace({"image.scale": "reference"}), plain),
            "physical, file": (physical, calibrated), "physical, lattice": (physical, plain)}
    made = {"sim-SAM": lambda: (simulate_sam_proposals(scene, seed=seed), {}),
            "classical": lambda: (Engine(base).proposer.propose(plain).masks,
                                  {"merging.k_estimator": "separation_all"})}
    proposals = {proposer: made[proposer]() for proposer in proposers}
    view = shared_view(case, magnification)
    rows = []
    for proposer, (masks, overrides) in proposals.items():
        for rule, (settings, micrograph) in runs.items():
            settings = settings.replace(overrides)
            result = Engine(settings).boost(micrograph, masks, settings=settings)
            shared = score_image(view(result.materials), view(scene.materials))
            rows.append({"case": case, "proposer": proposer, "rule": rule, "magnification": magnification,
                         "difficulty": difficulty, "seed": seed, "true_k": len(scene.names),
                         "found_k": len(result.materials), "crop_px": crop_px(result),
                         "scale": result.scale.source if result.scale else "none",
                         "shared_iou": shared.iou, **score_image(result.materials, scene.materials).as_dict()})
    return [{**row, "size": size, "job_s": time.perf_counter() - started} for row in rows]


def shared_view(case: str, magnification: int):
    """A function cutting a ``(K, P, P)`` mask stack of ``case`` at ``magnification`` to the field
    of view both magnifications show (narrow field at 1x: the centre half of each side)."""
    if case != "narrow field" or magnification == max(MAGNIFICATIONS):
        return lambda stack: stack

    def centre(stack: np.ndarray) -> np.ndarray:
        margin = stack.shape[-1] // 4
        return stack[:, margin:stack.shape[-2] - margin, margin:stack.shape[-1] - margin]

    return centre


def crop_px(result) -> int:
    """Crop side in px the booster used on ``result``'s image."""
    from samiam.booster.merging import crop_side

    return crop_side(result.settings.merging, *result.proposals.shape[1:])


def run(cases: list[str], proposers: tuple[str, ...], n: int, first_seed: int, size: int,
        workers: int) -> list[dict]:
    jobs = [(case, d, seed, size, m, proposers) for case in cases for d in (1, 2, 3)
            for seed in range(first_seed, first_seed + n) for m in MAGNIFICATIONS]
    jobs.sort(key=lambda job: -CASES[job[0]][MAGNIFICATIONS.index(job[4])].get("sampling", 1))  # big first
    with ProcessPoolExecutor(workers) as pool:
        return [row for rows in pool.map(score_one, jobs) for row in rows]


def report(rows: list[dict], command: str) -> str:
    cases = [case for case in CASES if any(r["case"] == case for r in rows)]
    proposers = [proposer for proposer in PROPOSERS if any(r["proposer"] == proposer for r in rows)]
    seeds = {case: sorted({r["seed"] for r in rows if r["case"] == case}) for case in cases}
    shown = "; ".join(f"{case}: {len(s)} scenes per difficulty class (1-3), seeds {s[0]}-{s[-1]}"
                      for case, s in seeds.items())
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on the dev box ({platform.node() or 'this machine'}, "
              f"2 shared CPU cores, no GPU) with `{command}`: {shown}; the jobs took "
              f"{job_minutes(rows):.0f} CPU-min."), "",
             ("Mean over the images of a row of the per-image metrics (docs/metrics.md), in %; `shared "
              "mIoU`: on the field both magnifications show; `K ok`: % of images where the number of "
              "materials found is the true one; `crop`: median crop side in px; `scale`: images whose "
              "scale came from the file / the lattice / neither (reference rule)."), "",
             "| case | proposer | rule | mag | px | mIoU | shared mIoU | PQ | K ok | crop | scale |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        for proposer in proposers:
            for rule in RULES:
                for m in MAGNIFICATIONS:
                    picked = select(rows, case, proposer, rule, m)
                    sources = [r["scale"] for r in picked]
                    side = CASES[case][MAGNIFICATIONS.index(m)].get("sampling", 1) * picked[0]["size"]
                    lines.append(
                        f"| {case} | {proposer} | {rule} | {m}x | {side} | {mean(picked, 'iou'):.1f} | "
                        f"{mean(picked, 'shared_iou'):.1f} | {mean(picked, 'pq'):.1f} | "
                        f"{100 * float(np.mean([r['found_k'] == r['true_k'] for r in picked])):.0f} | "
                        f"{int(np.median([r['crop_px'] for r in picked]))} | "
                        f"{sources.count('file')}/{sources.count('lattice')}/{sources.count('none')} |")
    lines += ["", ("Change of the shared mIoU from 1x to 2x, per scene (paired), in percentage points "
                   "(negative: quality drops at the higher magnification): mean ± standard deviation "
                   "over the scenes of each class; `all`: mean with its 95 % confidence interval "
                   "(± 1.96 standard errors); `worse`/`better`: scenes whose shared mIoU moves by more "
                   "than 5 points."), "",
              "| case | proposer | rule | d1 | d2 | d3 | all | worse | better |",
              "|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        for proposer in proposers:
            for rule in RULES:
                cells = []
                for d in (1, 2, 3):
                    change = paired_change(rows, case, proposer, rule, d)
                    cells.append(f"{change.mean():+.1f} ± {change.std(ddof=1):.1f}")
                change = paired_change(rows, case, proposer, rule, None)
                half = 1.96 * change.std(ddof=1) / np.sqrt(len(change))
                lines.append(f"| {case} | {proposer} | {rule} | " + " | ".join(cells)
                             + f" | {change.mean():+.1f} ± {half:.1f} | {int((change < -5).sum())} | "
                             f"{int((change > 5).sum())} |")
    return "\n".join(lines)


def select(rows: list[dict], case: str, proposer: str, rule: str, magnification: int) -> list[dict]:
    """The rows of one case, proposer, rule and magnification, ordered by (difficulty, seed)."""
    return sorted((r for r in rows if (r["case"], r["proposer"], r["rule"], r["magnification"]) ==
                   (case, proposer, rule, magnification)), key=lambda r: (r["difficulty"], r["seed"]))


def job_minutes(rows: list[dict]) -> float:
    """Wall time of the jobs (one scene at one magnification each), summed, in min."""
    return sum({(r["case"], r["difficulty"], r["seed"], r["magnification"]): r["job_s"] for r in rows}.values()) / 60


def mean(rows: list[dict], metric: str) -> float:
    """Mean of ``metric`` over ``rows``."""
    return float(np.mean([r[metric] for r in rows]))


def paired_change(rows: list[dict], case: str, proposer: str, rule: str,
                  difficulty: int | None) -> np.ndarray:
    """Per scene of ``difficulty`` (None: every class), shared mIoU at 2x minus that at 1x: ``(n,)``."""
    near, far = (np.array([r["shared_iou"] for r in select(rows, case, proposer, rule, m)
                           if difficulty in (None, r["difficulty"])]) for m in MAGNIFICATIONS[::-1])
    return near - far


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="scenes per difficulty class")
    parser.add_argument("--first-seed", type=int, default=100, help="seeds first-seed .. first-seed + n - 1")
    parser.add_argument("--size", type=int, default=512, help="side in px at 1x")
    parser.add_argument("--cases", nargs="+", choices=[c.split()[0] for c in CASES],
                        default=[c.split()[0] for c in CASES])
    parser.add_argument("--proposers", nargs="+", choices=PROPOSERS, default=list(PROPOSERS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--rows", type=Path, help="also write every per-image row to this JSON file")
    parser.add_argument("--from-rows", type=Path, nargs="+",
                        help="report rows written by earlier runs (--rows) instead of measuring")
    args = parser.parse_args()
    print(describe(bench_settings(CLASSICAL)), flush=True)
    command = "python bench/scale.py " + " ".join(sys.argv[1:])
    if args.from_rows:
        rows = [row for path in args.from_rows for row in json.loads(path.read_text())
                if row["case"].split()[0] in args.cases]
    else:
        cases = [c for c in CASES if c.split()[0] in args.cases]
        rows = run(cases, tuple(args.proposers), args.n, args.first_seed, args.size, args.workers)
    if args.rows:
        args.rows.write_text(json.dumps(rows, indent=1))
    text = report(rows, command)
    print(text)
    if args.write:
        write_section(DOCS, "scale", "Physical scale: crops at two magnifications", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
