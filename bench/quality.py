"""The booster's quality on labelled synthetic micrographs, measured like the paper.

For N images per difficulty class (``samiam.synth``), it scores against the exact ground truth:

* ``sim-SAM raw``: *simulated* SAM+ proposals (``samiam.synth.simulate_sam_proposals``: splits at
  antiphase boundaries, nested children, near-duplicates, islands, missed narrow layers, ragged
  edges) — a stand-in for SAM, since no checkpoint exists on the benchmark machines;
* ``sim-SAM+boost[<embedder>]``: the same proposals through the booster, K estimated, once per
  weight-free texture embedder (this is how the default embedder is chosen);
* ``sim-SAM+boost K known``: the default embedder with the true number of materials given;
* ``classical+boost``: the weight-free classical proposer, then the booster (K estimated), and
  ``classical+boost K known`` the same proposals with the true number of materials given;
* two weight-free baselines, given the true number of materials (``bench/baselines.py``):
  ``baseline block-hist K known`` (48 px blocks, intensity histogram per block, KMeans) and
  ``baseline local-FFT K known`` (pySTEM-style radial-angular FFT descriptors per pixel, KMeans).

It prints the table, reports how often the number of materials found equals the true one, and
with ``--write`` replaces the "Quality" section of ``docs/benchmarks.md`` and writes the charts
to ``docs/img/``. ``--quick`` runs 3 small images per class; ``--methods classical --classes 2``
runs only the classical rows on difficulty 2 (for tuning, with ``--first-seed 200``).

Seeds (``bench/seeds.py``): the evaluation range 1000..1019 by default (``--quick``: 1000..1002),
on which no threshold was tuned; tune with ``--first-seed`` in the tuning range (0..999).
Settings: samiam's defaults with the classical proposer, never ``SAMIAM_*`` environment
variables; ``--set section.field=value`` changes one (not with ``--write``).

    python bench/quality.py --write            # 20 images per class at 1024 x 1024
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_settings import add_set_option, bench_settings, describe, overrides
from sections import write_section
from seeds import EVALUATION_SEEDS, QUICK_EVALUATION_SEEDS, TUNING_SEEDS, seed_range

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
EMBEDDERS = ("intensity", "lbp", "fft", "combined")


def methods() -> list[str]:
    return (["sim-SAM raw"] + [f"sim-SAM+boost[{e}]" for e in EMBEDDERS]
            + ["sim-SAM+boost K known", "classical+boost", "classical+boost K known"] + BASELINES)


BASELINES = ["baseline block-hist K known", "baseline local-FFT K known"]


def score_one(job: tuple[int, int, int, tuple[str, ...], tuple[tuple[str, str], ...]]) -> list[dict]:
    """The ``wanted`` methods on one scene with the settings ``changes`` from :func:`base_settings`:
    a list of rows (method, image, difficulty, metrics, K found)."""
    difficulty, seed, size, wanted, changes = job
    from baselines import block_histogram_kmeans, local_descriptor_kmeans
    from PIL import Image

    from samiam.io import load_micrograph
    from samiam.metrics import score_image
    from samiam.pipeline import Engine
    from samiam.synth import generate_scene, simulate_sam_proposals

    scene = generate_scene(seed=seed, difficulty=difficulty, size=size)
    buffer = io.BytesIO()
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    micrograph = load_micrograph(buffer.getvalue())  # the 8-bit file a user would give samiam
    true_k = len(scene.names)
    base = base_settings(dict(changes))
    known = base.replace({"merging.materials": true_k})
    outputs = {}
    if any(m.startswith("sim-SAM") for m in wanted):
        proposals = simulate_sam_proposals(scene, seed=seed)
        outputs["sim-SAM raw"] = proposals
        for embedder in EMBEDDERS:
            settings = base.replace({"merging.embedder": embedder})
            outputs[f"sim-SAM+boost[{embedder}]"] = Engine(settings).boost(micrograph, proposals).materials
        outputs["sim-SAM+boost K known"] = Engine(known).boost(micrograph, proposals).materials
    if any(m.startswith("classical") for m in wanted):
        classical = Engine(base).segment(micrograph)
        outputs["classical+boost"] = classical.materials
        outputs["classical+boost K known"] = Engine(known).boost(micrograph, classical.proposals).materials
    if BASELINES[0] in wanted:
        outputs[BASELINES[0]] = block_histogram_kmeans(micrograph.grey, true_k, seed)
    if BASELINES[1] in wanted:
        outputs[BASELINES[1]] = local_descriptor_kmeans(micrograph.grey, true_k, seed)
    name = f"d{difficulty}_s{seed:04d}"
    return [{"label": method, "name": name, "difficulty": difficulty, "true_k": true_k,
             "found_k": len(masks), **score_image(masks, scene.materials).as_dict()}
            for method, masks in outputs.items() if method in wanted]


def base_settings(changes: dict[str, str]):
    """samiam's defaults (not the environment's) with the classical proposer and ``changes``."""
    return bench_settings({"proposals.proposer": "classical", **changes})


def run(n: int, size: int, workers: int, first_seed: int = EVALUATION_SEEDS.start,
        wanted: tuple[str, ...] | None = None, difficulties: tuple[int, ...] = (1, 2, 3),
        changes: dict[str, str] | None = None) -> list[dict]:
    wanted = tuple(methods()) if wanted is None else wanted
    changes = tuple((changes or {}).items())
    jobs = [(d, seed, size, wanted, changes) for d in difficulties for seed in range(first_seed, first_seed + n)]
    with ProcessPoolExecutor(workers) as pool:
        return [row for rows in pool.map(score_one, jobs) for row in rows]


def k_accuracy(rows: list[dict]) -> dict[str, float]:
    """Per method with K estimated: % of images where materials found == true materials."""
    result = {}
    present = {r["label"] for r in rows}
    for method in [m for m in methods()[1:] if "K known" not in m and m in present]:
        picked = [r for r in rows if r["label"] == method]
        result[method] = 100 * float(np.mean([r["found_k"] == r["true_k"] for r in picked]))
    return result


def report(rows: list[dict], n: int, size: int, seconds: float, charts: list[Path], command: str,
           seeds: range, settings_line: str) -> str:
    from samiam.evaluate import Evaluation, format_table
    from samiam.metrics import METRICS, summarize

    present = {r["label"] for r in rows}
    summary = [{"label": m, **row} for m in methods() if m in present
               for row in summarize([r for r in rows if r["label"] == m], METRICS)]
    evaluation = Evaluation(rows=rows, summary=summary, missing={}, unmatched={}, metrics=METRICS)
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} "
             f"({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU) with "
             f"`{command}`: {n} images per difficulty class, {size}x{size}, seeds {seed_range(seeds)} "
             f"({seeds_kind(seeds)}), {seconds / 60:.1f} min; {settings_line}."), "",
             ("Mean over images of the per-image metrics (docs/metrics.md), in %; FPR is an IoU-weighted "
             "count of superfluous masks (lower is better)."), ""]
    lines += ["| method | class | mIoU | recall | precision | F1 | boundary IoU | FPR | PQ |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        lines.append(f"| {row['label']} | {row['difficulty']} | {row['iou']:.1f} | {row['recall']:.1f} | "
                     f"{row['precision']:.1f} | {row['f1']:.1f} | {row['boundary_iou']:.1f} | "
                     f"{row['fpr']:.1f} | {row['pq']:.1f} |")
    lines += ["", "How often the number of materials found equals the true one (K estimated unless 'K known'):", "",
              "| method | K correct |", "|---|---|"]
    lines += [f"| {m} | {v:.0f} % |" for m, v in k_accuracy(rows).items()]
    lines += [""] + [f"![{p.stem}](img/{p.name})" for p in charts]
    print(format_table(evaluation))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="images per difficulty class")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--first-seed", type=int, default=None,
                        help=f"seeds first_seed..first_seed+n-1; default: the evaluation seeds "
                             f"{seed_range(EVALUATION_SEEDS)} ({seed_range(QUICK_EVALUATION_SEEDS)} with --quick); "
                             f"tune on seeds in {seed_range(TUNING_SEEDS)} only")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--methods", nargs="+", default=None, metavar="PREFIX",
                        help="only the methods whose names start with one of these (e.g. classical)")
    parser.add_argument("--classes", type=int, nargs="+", default=[1, 2, 3], help="difficulty classes")
    parser.add_argument("--quick", action="store_true", help="3 images per class at 512 px")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and docs/img/")
    add_set_option(parser)
    args = parser.parse_args()
    changes = overrides(args.set, parser)
    if args.quick:
        args.n, args.size = len(QUICK_EVALUATION_SEEDS), 512
    if args.first_seed is None:
        args.first_seed = EVALUATION_SEEDS.start
    seeds = range(args.first_seed, args.first_seed + args.n)
    if args.write and (seeds.start != EVALUATION_SEEDS.start or seeds.stop > EVALUATION_SEEDS.stop):
        parser.error(f"--write records the evaluation seeds {seed_range(EVALUATION_SEEDS)}: leave "
                     f"--first-seed out and --n at most {len(EVALUATION_SEEDS)}")
    if args.write and (args.methods or args.classes != [1, 2, 3] or changes):
        parser.error("--write records every method and class with default settings: leave --methods, "
                     "--classes and --set out")
    settings_line = describe(base_settings(changes))
    print(f"seeds {seed_range(seeds)} ({seeds_kind(seeds)}); {settings_line}", flush=True)
    wanted = tuple(m for m in methods() if args.methods is None or m.startswith(tuple(args.methods)))
    started = time.perf_counter()
    rows = run(args.n, args.size, args.workers, args.first_seed, wanted, tuple(args.classes), changes)
    seconds = time.perf_counter() - started
    charts = []
    if args.write:
        from samiam.evaluate import Evaluation, plot_summary
        from samiam.metrics import METRICS, summarize

        chart_methods = ["sim-SAM raw", "sim-SAM+boost[" + default_embedder() + "]", "classical+boost"]
        picked = [r for r in rows if r["label"] in chart_methods]
        summary = [{"label": m, **row} for m in chart_methods
                   for row in summarize([r for r in picked if r["label"] == m], METRICS)]
        img = DOCS.parent / "img"
        img.mkdir(parents=True, exist_ok=True)
        for path in plot_summary(Evaluation(picked, summary, {}, {}, METRICS), img):
            charts.append(path.rename(img / f"quality-{path.name}"))
    text = report(rows, args.n, args.size, seconds, charts, "python bench/quality.py " + " ".join(sys.argv[1:]),
                  seeds, settings_line)
    print(text)
    if args.write:
        write_section(DOCS, "quality", "Quality on synthetic micrographs", text)


def seeds_kind(seeds: range) -> str:
    """Which range of ``bench/seeds.py`` all of ``seeds`` lie in."""
    for name, known in (("evaluation seeds", EVALUATION_SEEDS), ("tuning seeds", TUNING_SEEDS)):
        if known.start <= seeds.start and seeds.stop <= known.stop:
            return name
    return "not all of one range"


def default_embedder() -> str:
    from samiam.booster.embedders import DEFAULT_EMBEDDER

    return DEFAULT_EMBEDDER


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
