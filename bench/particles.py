"""Particle detection on real micrographs that other people labelled (``shared/data/particles``).

33 STEM/TEM images of metal nanoparticles on supports, with one box per particle drawn by their
authors (README there). Split **by metal** (the letters a name starts with, up to a digit or
``_``) into two halves:

* **tuning half** (:data:`TUNING_METALS`: Cu, PtCo, PtW; 15 images): thresholds may be set on it;
* **reporting half** (:data:`REPORTING_METALS`: Pd, Pt, PtC — Pt2, Pt4, PtC*, Pt_carbon* —
  and Ru; 18 images): only reported. No threshold may move because of a reporting-half number.

Methods, each giving one instance label per particle (``(H, W) int32``):

* ``samiam``: the weight-free path (:class:`samiam.pipeline.Engine`, proposer ``classical``,
  samiam's default settings, not the environment's; ``--set`` changes one), its particles from
  :meth:`samiam.pipeline.Segmentation.particle_instances`: for every material that
  :mod:`samiam.measure` takes for particles, each kept proposal assigned to it, clipped to it;
* ``blob_log``: scikit-image's ``blob_log`` (:data:`BLOB_LOG` parameters) on the image, inverted
  first when it is bright field (:func:`is_bright_field`), each blob a disc of radius
  ``sigma * sqrt(2)``.

Scores (:mod:`samiam.particle_metrics`): a predicted particle and a drawn box are paired one to
one when the box IoU (the particle's bounding box against the drawn box) is at least 0.5,
maximising the summed IoU (Hungarian); precision = matched / predicted, recall = matched / true;
diameter error = ``|d - d_box| / d_box`` of the equivalent-circle diameters of each matched pair.
Seconds per image: wall time of the method alone (decoding excluded), one thread.

    python bench/particles.py --write                  # both halves, every image
    python bench/particles.py --quick                  # the first 2 images of each half
    python bench/particles.py --images Cu1 PtW2 --set proposals.classical_blob_contrast=4
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_settings import add_set_option, bench_settings, describe, overrides
from sections import write_section

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "benchmarks.md"
DATA = REPO.parent / "shared" / "data" / "particles"
TUNING_METALS = ("Cu", "PtCo", "PtW")
"""Metals of the tuning half: thresholds may be set on these images."""
REPORTING_METALS = ("Pd", "Pt", "PtC", "Ru")
"""Metals of the reporting half: reported only, never tuned on."""
HALVES = {"tuning": TUNING_METALS, "reporting": REPORTING_METALS}
QUICK_IMAGES = 2
"""Images per half in ``--quick`` runs (the first ones by name)."""
METHODS = ("samiam", "blob_log")
BLOB_LOG = {"min_sigma": 1.5, "max_sigma": 24.0, "num_sigma": 12, "log_scale": True,
            "threshold": 0.16, "overlap": 0.5}
"""Parameters of the ``blob_log`` baseline on the image in 0..1 (the stretched grey of
:func:`samiam.io.load_micrograph`), shrunk to at most :data:`BLOB_SIDE` px: sigmas from 1.5 px
(a disc 4 px across, the smallest boxes) to 24 px (68 px across), 12 scales spaced
geometrically; ``threshold``: scikit-image's, on the scale-normalised Laplacian, the best pooled
F1 on the tuning half of 0.03, 0.05, 0.08, 0.12, 0.16, 0.2, 0.25 and 0.3 (0.33; 0.28 at 0.12 and
0.29 at 0.2; 2026-12-08); of two blobs overlapping by more than half, the smaller goes."""
BLOB_SIDE = 1024
"""Larger images are shrunk (anti-aliased) to this longer side before ``blob_log`` and the blobs
scaled back, as samiam gives its pixel lengths at the 1024 px reference: the particles of the
2048² images are about twice as many px across, and at full size their noise makes blobs."""


def metal(name: str) -> str:
    """The metal of image ``name``: its leading letters up to a digit or ``_`` (``PtCo1`` -> ``PtCo``,
    ``Pt_carbon2`` -> ``Pt``)."""
    found = re.match(r"[A-Za-z]+", name)
    if found is None:
        raise ValueError(f"image name {name!r} does not start with a metal")
    return found.group(0)


def half_of(name: str) -> str:
    """``tuning`` or ``reporting`` for image ``name``, by its :func:`metal`."""
    for half, metals in HALVES.items():
        if metal(name) in metals:
            return half
    raise ValueError(f"image {name!r}: metal {metal(name)!r} is in neither half "
                     f"(tuning {', '.join(TUNING_METALS)}; reporting {', '.join(REPORTING_METALS)})")


def images_of(data: Path, half: str) -> list[str]:
    """Names (file stems) of the images of ``half`` in ``data/images``, sorted."""
    names = sorted(path.stem for path in (data / "images").glob("*.jpg"))
    return [name for name in names if half_of(name) == half]


def is_bright_field(grey: np.ndarray) -> bool:
    """Whether ``grey: (H, W) float`` looks bright field (particles darker than their
    surroundings): its intensity skewness is negative. Particles are a minority of the pixels,
    so their intensities make the distribution's long tail: a bright tail (positive skew) in
    HAADF/dark field, a dark one in bright field. (By eye, the set's 6 bright-field images are
    PtC1, PtC2, PtCo1, PtCo3, Pt_carbon1 and Pt_carbon2; this rule names exactly those.)"""
    values = grey.astype(np.float64).ravel()
    centred = values - values.mean()
    return float(np.mean(centred ** 3)) < 0


def blob_instances(grey: np.ndarray) -> np.ndarray:
    """The ``blob_log`` baseline on ``grey: (H, W) float`` -> ``(H, W) int32`` instances: one disc
    of radius ``sigma * sqrt(2)`` per blob (smaller discs drawn over larger ones), found on
    ``grey`` inverted when :func:`is_bright_field` and shrunk to :data:`BLOB_SIDE`."""
    from skimage.draw import disk
    from skimage.feature import blob_log
    from skimage.transform import resize

    image = np.clip(grey, 0, 1)
    if is_bright_field(image):
        image = 1 - image
    shrink = min(1.0, BLOB_SIDE / max(image.shape))
    if shrink < 1:
        image = resize(image, [round(side * shrink) for side in image.shape], anti_aliasing=True)
    blobs = blob_log(image, **BLOB_LOG) / shrink  # (y, x, sigma) in px of grey
    instances = np.zeros(grey.shape, np.int32)
    for label, (y, x, sigma) in enumerate(sorted(blobs, key=lambda blob: -blob[2]), start=1):
        instances[disk((y, x), sigma * math.sqrt(2), shape=grey.shape)] = label
    return instances


@dataclass(frozen=True)
class Job:
    """One image to score: its ``name`` (file stem), ``half``, the particles folder ``data`` and the
    settings ``changes`` (dotted name, value) on top of the classical proposer's defaults."""

    name: str
    half: str
    data: Path
    changes: tuple[tuple[str, str], ...]


_ENGINE = None
"""The worker process's :class:`samiam.pipeline.Engine` (its proposer is built once)."""


def score_image(job: Job) -> list[dict]:
    """Both methods on image ``job.name``: one row per method."""
    global _ENGINE
    from threadpoolctl import threadpool_limits

    from samiam.io import load_micrograph
    from samiam.particle_metrics import score_detections, yolo_boxes
    from samiam.pipeline import Engine

    settings = bench_settings({"proposals.proposer": "classical", **dict(job.changes)})
    if _ENGINE is None or _ENGINE.settings != settings:
        _ENGINE = Engine(settings)
    micrograph = load_micrograph(job.data / "images" / f"{job.name}.jpg", settings.image)
    boxes = yolo_boxes((job.data / "boxes" / f"{job.name}.txt").read_text(), *micrograph.grey.shape)
    rows = []
    for method in METHODS:
        started = time.perf_counter()
        with threadpool_limits(1):
            if method == "samiam":
                instances = _ENGINE.segment(micrograph).particle_instances()
            else:
                instances = blob_instances(micrograph.grey)
        seconds = time.perf_counter() - started
        rows.append({"method": method, "half": job.half, "image": job.name, "side": micrograph.grey.shape[0],
                     "scores": score_detections(instances, boxes), "seconds": seconds})
    return rows


def pooled(rows: list[dict]) -> list[dict]:
    """One row per (half, method) present: counts and diameter errors pooled over its images,
    seconds the mean per image."""
    result = []
    for half in HALVES:
        for method in METHODS:
            picked = [row for row in rows if row["half"] == half and row["method"] == method]
            if picked:
                total = picked[0]["scores"]
                for row in picked[1:]:
                    total = total + row["scores"]
                result.append({"method": method, "half": half, "image": f"all {len(picked)}", "side": None,
                               "scores": total, "seconds": float(np.mean([r["seconds"] for r in picked]))})
    return result


def table(rows: list[dict]) -> list[str]:
    """Markdown rows: half, image, method, predicted, true, matched, P, R, F1, median diameter error, s."""
    lines = [("| half | image | px | method | predicted | true | matched | precision | recall | F1 | "
             "median diameter error | s / image |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        s = row["scores"]
        error = "—" if math.isnan(s.median_diameter_error) else f"{100 * s.median_diameter_error:.0f} %"
        image = f"**{row['image']}**" if row["side"] is None else row["image"]
        lines.append(f"| {row['half']} | {image} | {row['side'] or ''} | {row['method']} | {s.predicted} | "
                     f"{s.true} | {s.matched} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {error} | "
                     f"{row['seconds']:.1f} |")
    return lines


def report(rows: list[dict], settings_line: str, command: str, minutes: float, workers: int) -> str:
    summary = pooled(rows)
    lines = [
        (f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} ({os.cpu_count()} CPU "
        f"cores, {platform.processor() or platform.machine()}, no GPU; {workers} worker process(es), one "
        f"thread each) with `{command}`, {minutes:.1f} min; {settings_line}."), "",
        ("Data: `shared/data/particles` (33 real HAADF-STEM and BF-TEM images, 640² to 2048², boxes drawn "
        "by their authors). **Tuning half** (thresholds may be set on it): Cu, PtCo, PtW (15 images). "
        "**Reporting half**: Pd, Pt (Pt2, Pt4, PtC\\*, Pt_carbon\\*), Ru (18 images); **no threshold may "
        "move because of a reporting-half number.**"), "",
        "Matching: a predicted particle (`samiam`: each kept proposal assigned to a material that "
        "`samiam.measure` takes for particles, clipped to it, `Segmentation.particle_instances`; "
        "`blob_log`: a disc of radius sigma·√2 per blob) and a drawn box are paired one to one when "
        "their box IoU is at least 0.5, maximising the summed IoU; precision = matched / predicted, "
        "recall = matched / true. Diameter error: |d − d_box| / d_box of each matched pair's "
        "equivalent-circle diameters (region: √(4 area / π); box: √(w h)). Seconds: the method alone "
        "per image. The `blob_log` baseline: `skimage.feature.blob_log` with "
        + ", ".join(f"{k}={v}" for k, v in BLOB_LOG.items())
        + f" on the stretched image (0..1) shrunk to at most {BLOB_SIDE} px (blobs scaled back), inverted when its intensity skewness is negative (bright "
        "field: dark particles; this names exactly the 6 bright-field images).", "",
        "Pooled over each half:", ""]
    lines += table(summary)
    lines += ["", "Per image:", ""]
    lines += table(sorted(rows, key=lambda r: (list(HALVES).index(r["half"]), r["image"], METHODS.index(r["method"]))))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half", choices=("tuning", "reporting", "both"), default="both")
    parser.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file stems)")
    parser.add_argument("--quick", action="store_true", help=f"the first {QUICK_IMAGES} images of each half")
    parser.add_argument("--data", type=Path, default=DATA, help="the particles folder (images/, boxes/)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes (1 by default: the seconds per image are then one core's)")
    parser.add_argument("--write", action="store_true", help="replace the 'particles' section of docs/benchmarks.md")
    add_set_option(parser)
    args = parser.parse_args()
    changes = overrides(args.set, parser)
    if not (args.data / "images").is_dir():
        parser.error(f"no particle images in {args.data / 'images'} (give --data)")
    if args.write and (args.images or args.quick or args.half != "both" or changes):
        parser.error("--write records both halves, every image, default settings: leave "
                     "--images, --quick, --half and --set out")
    halves = list(HALVES) if args.half == "both" else [args.half]
    names = {half: images_of(args.data, half) for half in halves}
    if args.quick:
        names = {half: found[:QUICK_IMAGES] for half, found in names.items()}
    if args.images:
        unknown = sorted(set(args.images) - {n for half in HALVES for n in images_of(args.data, half)})
        if unknown:
            parser.error(f"no such images: {', '.join(unknown)}")
        names = {half: [n for n in found if n in args.images] for half, found in names.items()}
    jobs = [Job(name, half, args.data, tuple(changes.items())) for half in halves for name in names[half]]
    settings_line = describe(bench_settings({"proposals.proposer": "classical", **changes}))
    print(settings_line, flush=True)
    started = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for found in pool.map(score_image, jobs):
            print("\n".join(table(found)[2:]), flush=True)
            rows += found
    text = report(rows, settings_line, "python bench/particles.py " + " ".join(sys.argv[1:]),
                  (time.perf_counter() - started) / 60, args.workers)
    print(text)
    if args.write:
        write_section(DOCS, "particles", "Particles on real micrographs", text)


if __name__ == "__main__":
    main()
