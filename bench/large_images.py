"""Large micrographs (4096² and 8192²): tiled proposals vs one downscaled view, and peak memory.

No SAM checkpoint exists on the benchmark machines and a random-weight SAM gives meaningless
masks, so SAM's proposals are *simulated* from the ground truth (``samiam.synth.failures``) in
the two ways SAM can see a large image:

* ``sim-SAM downscaled``: SAM sees the image shrunk to 1024 px (what it does without tiling):
  the failures are simulated on the ground truth shrunk to 1024 px (area average > 0.5) and each
  mask is brought back to full size as SAM does with its low-resolution logits (bilinear, > 0.5);
* ``sim-SAM tiled``: SAM runs per ``proposals.tile_size`` tile (``samiam.proposals.tiled``): the
  failures are simulated per tile on the tile's ground truth, and the tiles' masks are merged
  across the seams by ``tiled.merge_across_seams``, exactly as for real SAM tiles.

Both are scored raw and after the booster (K estimated) against the exact ground truth with
``samiam.metrics.score_image`` (as bench/quality.py does). The weight-free path (classical
proposer, which ``tiling="auto"`` leaves untiled) is scored too, tiled and untiled.

Peak memory is the resident-set high-water mark (``VmHWM``) of a fresh process that does one
image's work, as a worker would: ``load`` (decode an 8-bit PNG), ``classical`` (load + proposals +
booster) and ``sim-SAM tiled`` (load + tiled proposals + booster). The scene itself is generated
in another process and handed over as files, so its generation does not count.

    python bench/large_images.py --sizes 4096 8192 --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from bench_settings import bench_settings, describe
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
CLASSICAL = {"proposals.proposer": "classical"}
"""The settings every run uses: samiam's defaults (not the environment's) with the classical proposer."""
DOWNSCALED_SIDE = 1024
"""The side SAM's image encoder sees."""
DIFFICULTY = 2


def prepare(size: int, seed: int, directory: Path) -> tuple[Path, Path]:
    """Render scene ``seed`` at ``size`` px: (8-bit PNG path, ground truth ``.npz`` path)."""
    from PIL import Image

    from samiam.synth import generate_scene

    scene = generate_scene(seed=seed, difficulty=DIFFICULTY, size=size)
    image = directory / f"scene{size}_{seed}.png"
    Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(image)
    truth = directory / f"scene{size}_{seed}.npz"
    np.savez(truth, packed=np.packbits(scene.materials, axis=-1), width=size)
    return image, truth


def load_truth(path: Path) -> np.ndarray:
    """Ground truth ``materials: (K, H, W) bool`` saved by :func:`prepare`."""
    saved = np.load(path)
    return np.unpackbits(saved["packed"], axis=-1, count=int(saved["width"])).astype(bool)


def simulated_downscaled(materials: np.ndarray, seed: int) -> np.ndarray:
    """``materials: (K, H, W) bool`` -> simulated SAM masks of the 1024 px view, ``(N, H, W) bool``."""
    from samiam.synth import simulate_sam_proposals

    height, width = materials.shape[1:]
    scale = DOWNSCALED_SIDE / max(height, width)
    small_size = (round(width * scale), round(height * scale))
    small = np.array([cv2.resize(m.astype(np.float32), small_size, interpolation=cv2.INTER_AREA) > 0.5
                      for m in materials])
    masks = simulate_sam_proposals(small, seed=seed)
    return np.array([cv2.resize(m.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
                     for m in masks]).reshape(-1, height, width)


def simulated_tiled(materials: np.ndarray, grey: np.ndarray, seed: int, settings):
    """``materials: (K, H, W) bool`` of the image ``grey: (H, W)`` -> simulated SAM masks per tile,
    through the removal rules per tile and merged across the seams as :func:`samiam.proposals.tiled.propose` does
    (:class:`samiam.proposals.tiled.BoxMasks`); ``settings``: :class:`samiam.settings.Settings`."""
    from samiam.proposals import tiled
    from samiam.proposals.base import Proposals
    from samiam.synth import simulate_sam_proposals

    shape = materials.shape[1:]
    boxes = tiled.tile_boxes(shape, settings.proposals.tile_size, settings.proposals.tile_overlap)

    def per_tile():
        for t, (y0, x0, y1, x1) in enumerate(boxes):
            present = [m[y0:y1, x0:x1] for m in materials if m[y0:y1, x0:x1].any()]
            if not present:
                yield Proposals.empty((y1 - y0, x1 - x0))
                continue
            masks = simulate_sam_proposals(np.array(present), seed=seed * 1000 + t)
            yield tiled.remove_per_tile(Proposals(masks, np.ones(len(masks), np.float32)), grey[y0:y1, x0:x1],
                                        settings.removal)

    return tiled.merge_across_seams(shape, boxes, per_tile(), settings.proposals.seam_iou)


def quality(image: Path, truth: Path, seed: int) -> list[dict]:
    """Every method on one scene: rows of (method, size, proposals, materials found, metrics, s)."""
    from samiam.io import load_micrograph
    from samiam.metrics import score_image
    from samiam.pipeline import Engine
    from samiam.proposals import tiled

    materials = load_truth(truth)
    micrograph = load_micrograph(image)
    base = bench_settings(CLASSICAL)
    rows = []

    def row(method: str, masks: np.ndarray, seconds: float, proposals: int) -> None:
        rows.append({"method": method, "size": micrograph.shape[0], "seed": seed, "proposals": proposals,
                     "found": len(masks), "true_k": len(materials), "seconds": seconds,
                     **score_image(masks, materials).as_dict()})
        print(rows[-1], flush=True)

    for name, simulate in (("downscaled", lambda: simulated_downscaled(materials, seed)),
                           ("tiled", lambda: simulated_tiled(materials, micrograph.grey, seed, base).to_stack())):
        started = time.perf_counter()
        masks = simulate()
        simulated = time.perf_counter() - started
        row(f"sim-SAM {name} raw", masks, simulated, len(masks))
        started = time.perf_counter()
        boosted = Engine(base).boost(micrograph, masks).materials
        row(f"sim-SAM {name}+boost", boosted, simulated + time.perf_counter() - started, len(masks))
        del masks, boosted
    for mode in ("off", "on"):
        settings = base.replace({"proposals.tiling": mode})
        engine = Engine(settings)
        started = time.perf_counter()
        proposals = tiled.propose(engine.proposer, micrograph, settings)
        segmentation = engine.boost(micrograph, proposals.masks, proposals.scores)
        row(f"classical tiling={mode}+boost", segmentation.materials, time.perf_counter() - started,
            len(proposals.masks))
    return rows


RSS_LIMIT_GIB = 8.0
"""A measured process is stopped above this resident size (the box is shared; the target is 6)."""


def stop_above(limit_gib: float, job: str) -> None:
    """Watch this process's resident size from a thread; print a JSON error and exit above ``limit_gib``."""
    def watch():
        while True:
            if status_gib("VmRSS") > limit_gib:
                print(json.dumps({"job": job, "error": f"stopped above {limit_gib:.0f} GiB resident"}), flush=True)
                os._exit(3)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()


def peak(job: str, image: Path, truth: Path, seed: int) -> dict:
    """One worker's work on one image in a fresh process: its wall time and RSS high-water mark."""
    from samiam.io import load_micrograph
    from samiam.pipeline import Engine

    settings = bench_settings(CLASSICAL)
    started = time.perf_counter()
    micrograph = load_micrograph(image)
    count = None
    if job == "classical":
        count = len(Engine(settings).segment(micrograph).proposals)
    elif job == "sim-SAM tiled":
        merged = simulated_tiled(load_truth(truth), micrograph.grey, seed, settings)
        count = len(merged)
        Engine(settings).boost(micrograph, merged.to_stack(), merged.scores)
    seconds = time.perf_counter() - started
    return {"job": job, "seconds": seconds, "proposals": count, "peak_gib": status_gib("VmHWM")}


def status_gib(field: str) -> float:
    """A size from ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in GiB. ``VmHWM`` is this process's
    own high-water mark; ``ru_maxrss`` is not, as Linux carries the parent's resident size at fork
    across exec into it."""
    status = Path("/proc/self/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 2 ** 20


def in_fresh_process(*args: str) -> dict:
    """Run this script's ``--one`` mode in a new interpreter and return its JSON line."""
    done = subprocess.run([sys.executable, __file__, "--one", *args], check=False, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.stdout.strip():
        return json.loads(done.stdout.strip().splitlines()[-1])
    return {"job": args[0], "error": done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}


def report(quality_rows: list[dict], peaks: list[dict], seconds: float) -> str:
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} (dev box, "
              f"{os.cpu_count()} shared CPU cores, no GPU) with `python bench/large_images.py`, "
              f"{seconds / 60:.0f} min: synthetic difficulty-{DIFFICULTY} scenes, 1024 px tiles with "
              "128 px overlap. sim-SAM = SAM's failures simulated from the ground truth (no checkpoint "
              "here): per tile for 'tiled', on the 1024 px view for 'downscaled'."), "",
             "| method | size | seed | proposals | materials (true) | mIoU | boundary IoU | F1 | PQ | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['size']} | {r['seed']} | {r['proposals']} | {r['found']} ({r['true_k']}) | "
              f"{r['iou']:.1f} | {r['boundary_iou']:.1f} | {r['f1']:.1f} | {r['pq']:.1f} | {r['seconds']:.0f} |"
              for r in quality_rows]
    lines += ["", "One image on one worker, in a fresh process (resident high-water mark, `VmHWM`):", "",
              "| work | size | proposals | s | peak GiB |", "|---|---|---|---|---|"]
    for p in peaks:
        if "error" in p:
            lines.append(f"| {p['job']} | {p['size']} | - | - | failed: {p['error']} |")
        else:
            lines.append(f"| {p['job']} | {p['size']} | {p['proposals'] if p['proposals'] is not None else '-'} | "
                         f"{p['seconds']:.0f} | {p['peak_gib']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    parser.add_argument("--quality-sizes", type=int, nargs="+", default=[4096],
                        help="sizes also scored for quality (scoring 8192² needs many GiB)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-peaks", dest="peaks", action="store_false", help="measure quality only")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--one", nargs=4, metavar=("JOB", "IMAGE", "TRUTH", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        job, image, truth, seed = args.one
        stop_above(RSS_LIMIT_GIB, job)
        print(json.dumps(peak(job, Path(image), Path(truth), int(seed))))
        return
    print(describe(bench_settings(CLASSICAL)), flush=True)
    started = time.perf_counter()
    quality_rows, peaks = [], []
    with tempfile.TemporaryDirectory() as directory:
        for size in args.sizes:
            image, truth = prepare(size, args.seed, Path(directory))
            for job in ("load", "classical", "sim-SAM tiled") if args.peaks else ():
                peaks.append({"size": size, **in_fresh_process(job, str(image), str(truth), str(args.seed))})
                print(peaks[-1], flush=True)
            if size in args.quality_sizes:
                quality_rows += quality(image, truth, args.seed)
    text = report(quality_rows, peaks, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(DOCS, "large-images", "Large images (4096² and 8192²)", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
