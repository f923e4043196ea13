"""Pre-labels with the lab's own names: how many regions carry the right label after an annotator
has corrected a few images of a series.

For each difficulty class, ``--series`` series of synthetic micrographs of one sample
(``samiam.synth.series``: same materials, levels and pixel size; own layout, defects and
acquisition). An annotator is simulated who corrects the first c = 0, 1, 2, 5, 10 images of a
series (their ground-truth masks are the annotations, learned with
``samiam.booster.prototypes.update``); the last ``--test`` images of each series are then
pre-labelled and scored, for

* proposals: simulated SAM+ masks (``simulate_sam_proposals``) and the weight-free classical
  proposer's masks;
* naming: ``cluster`` (the booster clusters, then clusters are named one to one) and
  ``supervised`` (masks classified by the prototypes; only with c >= 1), and as the reference the
  unsupervised booster with the true number of materials given (``K known``).

The label config lists the series' materials in alphabetical order, so with c = 0 regions carry
the config-order placeholders (``samiam.labelstudio.results.region_labels``). Scores:

* **named %**: share of predicted regions whose label is the ground-truth material they overlap
  most (regions overlapping no material count as wrong);
* **named mIoU**: mean over the ground-truth materials of the IoU between the material and the
  region carrying its name (0 when none does) — what an annotator who does not relabel gets;
* **mIoU**: the paper's name-blind mIoU (regions matched to materials, ``samiam.metrics``).

    python bench/naming.py --write          # 6 series per class, 14 images each, 512 px
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_settings import bench_settings, describe
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
CLASSICAL = {"proposals.proposer": "classical"}
"""The settings every run uses: samiam's defaults (not the environment's) with the classical proposer."""
CHART = REPO / "docs" / "img" / "naming.png"
CORRECTED = (0, 1, 2, 5, 10)
PROPOSERS = ("sim-SAM", "classical")


def _micrograph(scene):
    from PIL import Image

    from samiam.io import load_micrograph

    buffer = io.BytesIO()
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
    return load_micrograph(buffer.getvalue())  # the 8-bit file a user would give samiam


def score_naming(materials: np.ndarray, names, truth: np.ndarray, truth_names: list[str]) -> dict:
    """Naming scores of predicted ``materials: (K, H, W) bool`` labelled by the config rule from
    ``names`` (K entries or None) against ``truth: (T, H, W) bool`` named ``truth_names``."""
    from samiam.labelstudio.results import region_labels
    from samiam.metrics import score_image

    config = sorted(truth_names)
    labels = [label for label, _ in region_labels(names or [None] * len(materials), config)]
    overlap = (materials[:, None] & truth[None]).sum(axis=(2, 3))  # (K, T)
    right = [overlap[k].max() > 0 and truth_names[int(overlap[k].argmax())] == label
             for k, label in enumerate(labels)]
    per_label = {}
    for t, name in enumerate(truth_names):
        region = materials[[label == name for label in labels]].any(axis=0) if labels else \
            np.zeros(truth.shape[1:], bool)
        union = (region | truth[t]).sum()
        per_label[name] = float((region & truth[t]).sum() / union) if union else 0.0
    return {"regions": len(labels), "right": int(sum(right)), "per_label": per_label,
            "named_miou": 100 * float(np.mean(list(per_label.values()))),
            "miou": score_image(materials, truth).as_dict()["iou"]}


def run_series(job: tuple[int, int, int, int, int]) -> list[dict]:
    """Every method on the test images of one series: one row per (image, proposer, method, c)."""
    difficulty, seed, size, length, n_test = job
    from samiam.booster.prototypes import Prototypes, update
    from samiam.pipeline import Engine
    from samiam.synth import simulate_sam_proposals
    from samiam.synth.series import generate_series

    scenes = generate_series(seed, difficulty, length, size)
    base = bench_settings(CLASSICAL)
    engine = Engine(base)
    learned = {0: Prototypes.empty(engine.embedder)}
    prototypes = learned[0]
    for c, scene in enumerate(scenes[:max(CORRECTED)], start=1):
        prototypes = update(prototypes, _micrograph(scene).grey, scene.materials, scene.names,
                            engine.embedder, base)
        if c in CORRECTED:
            learned[c] = prototypes
    rows = []
    bounded = base.replace({"merging.max_materials": len(scenes[0].names)})  # as the service bounds K
    for scene in scenes[length - n_test:]:
        micrograph = _micrograph(scene)
        given = {"sim-SAM": (simulate_sam_proposals(scene, seed=scene.seed), bounded),
                 "classical": (engine.proposer.propose(micrograph).masks,
                               bounded.replace({"merging.k_estimator": "silhouette"}))}
        for proposer, (masks, settings) in given.items():
            runs = [("K known", 0, settings.replace({"merging.materials": len(scene.names)}), None)]
            runs += [(mode, c, settings.replace({"naming.mode": mode}), learnt if c else None)
                     for c, learnt in learned.items() for mode in ("cluster", "supervised")
                     if mode == "cluster" or c > 0]
            for method, c, chosen, learnt in runs:
                segmentation = engine.boost(micrograph, masks, settings=chosen, prototypes=learnt)
                rows.append({"difficulty": difficulty, "series": seed, "image": scene.seed, "proposer": proposer,
                             "method": method, "corrected": c,
                             **score_naming(segmentation.materials, segmentation.names, scene.materials,
                                            scene.names)})
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Per (proposer, method, corrected): named %, named mIoU and mIoU over all test images."""
    keys = sorted({(r["proposer"], r["method"], r["corrected"]) for r in rows},
                  key=lambda k: (PROPOSERS.index(k[0]), k[1] != "K known", k[1], k[2]))
    out = []
    for proposer, method, c in keys:
        picked = [r for r in rows if (r["proposer"], r["method"], r["corrected"]) == (proposer, method, c)]
        out.append({"proposer": proposer, "method": method, "corrected": c, "images": len(picked),
                    "named": 100 * sum(r["right"] for r in picked) / max(sum(r["regions"] for r in picked), 1),
                    "named_miou": float(np.mean([r["named_miou"] for r in picked])),
                    "miou": float(np.mean([r["miou"] for r in picked]))})
    return out


def per_label(rows: list[dict], corrected: int, method: str) -> dict[str, dict[str, float]]:
    """Mean per-label IoU (%) by material name, per proposer, after ``corrected`` images."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        if r["corrected"] == corrected and r["method"] == method:
            for name, iou in r["per_label"].items():
                table.setdefault(name, {}).setdefault(r["proposer"], []).append(100 * iou)
    return {name: {p: float(np.mean(v)) for p, v in by.items()} for name, by in sorted(table.items())}


def chart(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for proposer, style in zip(PROPOSERS, ("-", "--")):
        for method, colour in (("cluster", "tab:blue"), ("supervised", "tab:orange")):
            line = [s for s in summary if s["proposer"] == proposer and s["method"] == method]
            if method == "supervised":
                line = [s for s in summary if s["proposer"] == proposer and s["method"] == "cluster"
                        and s["corrected"] == 0] + line
            xs = [s["corrected"] for s in line]
            axes[0].plot(xs, [s["named"] for s in line], style, color=colour, marker="o",
                         label=f"{proposer}, {method}")
            axes[1].plot(xs, [s["named_miou"] for s in line], style, color=colour, marker="o")
        known = [s for s in summary if s["proposer"] == proposer and s["method"] == "K known"]
        axes[1].axhline(known[0]["miou"], color="grey", linestyle=style, linewidth=1,
                        label=f"{proposer}: name-blind mIoU, K known")
    axes[0].axhline(95, color="red", linewidth=0.8, linestyle=":")
    axes[0].set(xlabel="images corrected", ylabel="regions named right (%)", ylim=(0, 101))
    axes[1].set(xlabel="images corrected", ylabel="named mIoU (%)", ylim=(0, 101))
    axes[0].legend(fontsize=7, loc="lower right")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows: list[dict], summary: list[dict], args, seconds: float) -> str:
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} "
             f"({os.cpu_count()} CPU cores shared, {platform.processor() or platform.machine()}, no GPU) with "
             f"`python bench/naming.py --write --series {args.series} --size {args.size}`: {args.series} series "
             f"per difficulty class, {args.length} images each, {args.size}x{args.size}; the last {args.test} of "
             f"each series are scored ({len({(r['series'], r['difficulty'], r['image']) for r in rows})} images), "
             f"{seconds / 60:.1f} min."), "",
             "| proposals | naming | images corrected | regions named right | named mIoU | mIoU (name-blind) |",
             "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['proposer']} | {s['method']} | {s['corrected'] if s['method'] != 'K known' else '-'} "
                     f"| {s['named']:.1f} % | {s['named_miou']:.1f} | {s['miou']:.1f} |")
    for method in ("cluster", "supervised"):
        labels = per_label(rows, 2, method)
        lines += ["", f"Per-label IoU (%) after 2 corrected images, {method} naming:", "",
                  "| material | " + " | ".join(PROPOSERS) + " |", "|---" * (len(PROPOSERS) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{by.get(p, float('nan')):.1f}" for p in PROPOSERS) + " |"
                  for name, by in labels.items()]
    lines += ["", f"![naming](img/{CHART.name})"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=6, help="series per difficulty class")
    parser.add_argument("--length", type=int, default=14, help="images per series (> 10 + --test - 1)")
    parser.add_argument("--test", type=int, default=3, help="images scored at the end of each series")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and docs/img/")
    args = parser.parse_args()
    print(describe(bench_settings(CLASSICAL)), flush=True)
    if args.length - args.test < max(CORRECTED):
        parser.error(f"--length must leave {max(CORRECTED)} images to learn from before the --test ones")
    started = time.perf_counter()
    jobs = [(d, seed, args.size, args.length, args.test) for d in (1, 2, 3) for seed in range(args.series)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [row for rows in pool.map(run_series, jobs) for row in rows]
    summary = summarise(rows)
    text = report(rows, summary, args, time.perf_counter() - started)
    print(text)
    if args.write:
        chart(summary, CHART)
        write_section(DOCS, "naming", "Pre-labels with the project's label names", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
