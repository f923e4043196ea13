"""The booster on real particle micrographs: raw vs boosted mIoU and the particle material's IoU.

For each image of ``shared/data/particles`` (README there), SAM-like proposals are made from the
authors' boxes (:mod:`samiam.box_proposals`: one mask per particle by Otsu inside its box, by
polarity, a support mask with the particles in it, a vacuum mask when there is vacuum) and the
ground truth from the same masks (particles, support, vacuum). Both are scored like
``bench/quality.py`` scores raw and boosted proposals (:func:`samiam.metrics.score_image`,
mIoU over the ground-truth materials); the particle IoU is the best material's IoU with the
particles' union. Images wider than ``--max-side`` (default 1024) are area-averaged down by an
integer factor (2048 -> 1024, boxes with them), so that a stack of 500 full-size masks fits the
benchmark machine's memory. Settings are the defaults (``Settings()``): no ``SAMIAM_*`` variable
changes a published number.

The set is split by metal: the tuning half (Cu*, PtCo*, PtW*, on which the population rule's
thresholds were set) and the reporting half (Pd*, Pt2, Pt4, PtC*, Pt_carbon*, Ru*), never used
to set a threshold.

``--contrast`` prints instead, for the tuning half, how the population rule's contrast threshold
(``removal.population_contrast``) sorts the particles from noise islands: the share of the
particles' area whose mask's ring contrast reaches each threshold, and the share of noise islands
made the same way (Otsu, by polarity) in 60 boxes of the particles' sizes placed at least 10 px
from every particle (seed 0) that do.

    python bench/booster_particles.py --write     # every image, about 5 min on 2 cores
    python bench/booster_particles.py --images Cu1 Pt4
    python bench/booster_particles.py --contrast
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
TUNING_PREFIXES = ("Cu", "PtCo", "PtW")
"""Names of the tuning half start with these; every other image is the reporting half."""
CONTRASTS = (0.75, 1.0, 1.5, 2.0)
NOISE_BOXES = 60


def half(name: str) -> str:
    return "tuning" if name.startswith(TUNING_PREFIXES) else "reporting"


def particles_dir() -> Path:
    for root in (REPO.parent / "shared", Path(os.environ.get("SAMIAM_SHARED", "/work/shared"))):
        if (root / "data" / "particles").is_dir():
            return root / "data" / "particles"
    sys.exit("shared/data/particles not found (set SAMIAM_SHARED)")


def load(folder: Path, name: str, max_side: int):
    """(micrograph, boxes (B, 4) x0 y0 x1 y1 px) of one image, shrunk by an integer factor so that
    its longer side is at most ``max_side``."""
    import cv2

    from samiam.io import Micrograph, load_micrograph
    from samiam.particle_metrics import yolo_boxes

    micrograph = load_micrograph(folder / "images" / f"{name}.jpg")
    boxes = yolo_boxes((folder / "boxes" / f"{name}.txt").read_text(), *micrograph.shape)
    factor = -(-max(micrograph.shape) // max_side)
    if factor > 1:
        h, w = (side // factor for side in micrograph.shape)
        grey = cv2.resize(micrograph.grey, (w, h), interpolation=cv2.INTER_AREA)
        rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
        micrograph = Micrograph(name=name, raw=grey, grey=grey, rgb=rgb, bit_depth=32)
        boxes = boxes / factor
    return micrograph, boxes


def score(folder: Path, name: str, max_side: int) -> dict:
    from samiam.box_proposals import box_proposals
    from samiam.metrics import pair_stats, score_image
    from samiam.pipeline import Engine
    from samiam.settings import Settings

    micrograph, boxes = load(folder, name, max_side)
    made = box_proposals(micrograph.grey, boxes)
    started = time.perf_counter()
    segmentation = Engine(Settings()).boost(micrograph, made.proposals)
    seconds = time.perf_counter() - started
    materials = segmentation.materials
    particle_iou = float(pair_stats(materials, made.truth[:1]).iou.max()) if len(materials) else 0.0
    kept = np.equal(segmentation.removed[:made.n_particles], None)
    return {"name": name, "half": half(name), "side": micrograph.shape[0], "bright": made.bright,
            "particles": made.n_particles, "kept": float(kept.mean()), "truth": len(made.truth),
            "found": len(materials), "raw": score_image(made.proposals, made.truth).iou,
            "boosted": score_image(materials, made.truth).iou, "particle_iou": 100 * particle_iou,
            "seconds": seconds}


def report(rows: list[dict], command: str, seconds: float) -> str:
    lines = [(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} "
             f"({os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU) with "
             f"`{command}`, {seconds / 60:.1f} min. Proposals: one mask per drawn box (Otsu inside the box, "
             "by polarity), the support (particles in it) and the vacuum, as SAM gives them "
             "(`samiam.box_proposals`); ground truth from the same masks. mIoU over particles, support "
             "and vacuum (as `bench/quality.py`), in %; particle IoU: the best material against the "
             "particles' union; kept: share of particle masks the removal rules keep (the population "
             "rule; the paper's rules alone keep none: every particle is a tiny child of its support). "
             "Polarity: HAADF, particles bright; BF, bright field, particles dark. Default settings; "
             "images of 2048 px shrunk to 1024 px. Tuning half: Cu*, PtCo*, PtW*, where the population "
             "rule's thresholds were set (`--contrast`); reporting half: the rest, never used to set one."), "",
             "| half | image | px | polarity | particles | kept | raw mIoU | boosted mIoU | particle IoU | materials | s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['half']} | {r['name']} | {r['side']} | {'HAADF' if r['bright'] else 'BF'} | "
                     f"{r['particles']} | {100 * r['kept']:.0f} % | {r['raw']:.1f} | {r['boosted']:.1f} | "
                     f"{r['particle_iou']:.1f} | {r['found']} / {r['truth']} | {r['seconds']:.1f} |")
    lines += ["", ("| half | images | mean raw mIoU | mean boosted mIoU | boosted >= raw | mean particle IoU | "
                   "particle IoU >= 70 |"), "|---|---|---|---|---|---|---|"]
    for name in ("tuning", "reporting", "reporting, HAADF only"):
        picked = [r for r in rows if r["half"] == name.split(",")[0] and (r["bright"] or "HAADF" not in name)]
        if picked:
            lines.append(
                f"| {name} | {len(picked)} | {np.mean([r['raw'] for r in picked]):.1f} | "
                f"{np.mean([r['boosted'] for r in picked]):.1f} | "
                f"{sum(r['boosted'] >= r['raw'] for r in picked)} / {len(picked)} | "
                f"{np.mean([r['particle_iou'] for r in picked]):.1f} | "
                f"{sum(r['particle_iou'] >= 70 for r in picked)} / {len(picked)} |")
    return "\n".join(lines)


def contrast_row(folder: Path, name: str, max_side: int, rng: np.random.Generator) -> str:
    """The ``--contrast`` line of one tuning image (module docstring)."""
    from scipy import ndimage

    from samiam.booster.removal import ring_contrast, ring_width
    from samiam.box_proposals import box_proposals, particle_mask, pixel_boxes
    from samiam.settings import RemovalSettings

    micrograph, boxes = load(folder, name, max_side)
    grey = micrograph.grey.astype(np.float64)
    h, w = grey.shape
    made = box_proposals(grey, boxes)
    sized = pixel_boxes(boxes, grey.shape)
    near = ndimage.binary_dilation(made.particle_truth, iterations=10)
    oriented = grey if made.bright else -grey
    noise = []
    for _ in range(NOISE_BOXES):
        x0, y0, x1, y1 = sized[rng.integers(len(sized))]
        bw, bh = x1 - x0, y1 - y0
        for _ in range(50):
            nx, ny = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            if not near[ny:ny + bh, nx:nx + bw].any():
                break
        mask = particle_mask(oriented, np.array([nx, ny, nx + bw, ny + bh]))
        if mask.sum() >= 4:
            noise.append(mask)
    particles = made.proposals[:made.n_particles]
    masks = np.concatenate([particles, np.asarray(noise, bool).reshape(-1, h, w)])
    sign = 1.0 if made.bright else -1.0
    contrast = sign * ring_contrast(grey, masks, np.ones(len(masks), bool), ring_width(RemovalSettings(), h, w))
    ours, theirs = contrast[:len(particles)], contrast[len(particles):]
    area = particles.sum(axis=(1, 2))
    cells = [f"{100 * area[ours >= t].sum() / area.sum():.0f} / {100 * np.mean(theirs >= t):.0f}" for t in CONTRASTS]
    return f"| {name} | {len(particles)} | {len(noise)} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", help="image names (default: all)")
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--contrast", action="store_true", help="the population contrast table (tuning half)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    folder = particles_dir()
    names = args.images or sorted(p.stem for p in (folder / "images").glob("*.jpg"))
    if args.write and (args.images or args.contrast or args.max_side != 1024):
        parser.error("--write records every image at the default --max-side")
    command = "python bench/booster_particles.py " + " ".join(sys.argv[1:])
    if args.contrast:
        rng = np.random.default_rng(0)
        print("particles' area / noise islands (%) with ring contrast >= " + ", ".join(map(str, CONTRASTS)))
        print("| image | particles | noise islands | " + " | ".join(f">= {t}" for t in CONTRASTS) + " |")
        for name in names:
            if half(name) == "tuning":
                print(contrast_row(folder, name, args.max_side, rng), flush=True)
        return
    started = time.perf_counter()
    rows = []
    for name in sorted(names, key=lambda n: (half(n) != "tuning", n)):
        rows.append(score(folder, name, args.max_side))
        print(rows[-1], flush=True)
    text = report(rows, command, time.perf_counter() - started)
    print(text)
    if args.write:
        write_section(DOCS, "booster-particles", "Booster on real particle micrographs", text)


if __name__ == "__main__":
    main()
