"""Speed of the weight-free path (classical proposer + booster, K estimated) on one CPU core.

Usage::

    python bench/classical_speed.py            # 1024^2 and 4096^2 synthetic micrographs
    python bench/classical_speed.py --sizes 1024

Threads are limited to one (OMP/OPENBLAS/MKL_NUM_THREADS=1 before numpy is imported). For each
size a difficulty-2 synthetic scene is drawn (its drawing is not timed), written as the 8-bit
PNG a user would give samiam, and segmented ``--repeats`` times by one :class:`samiam.pipeline.Engine`
with the classical proposer; the best time is reported, with the engine's split into proposals,
removal and merging. Targets: at most 5 s at 1024^2, at most 60 s at 4096^2.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import io
import platform
import time

import numpy as np
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from samiam.io import load_micrograph
    from samiam.pipeline import Engine
    from samiam.settings import Settings
    from samiam.synth import generate_scene

    engine = Engine(Settings().replace({"proposals.proposer": "classical"}))
    print(f"{time.strftime('%Y-%m-%d')} {platform.node()} ({os.cpu_count()} cores, one used), "
          f"{platform.processor() or platform.machine()}")
    print("| size | best total s | proposals s | removal s | merging s | materials |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        scene = generate_scene(seed=args.seed, difficulty=2, size=size)
        buffer = io.BytesIO()
        Image.fromarray(np.round(scene.image * 255).astype(np.uint8)).save(buffer, "PNG")
        micrograph = load_micrograph(buffer.getvalue())
        best = None
        for _ in range(args.repeats):
            started = time.perf_counter()
            segmentation = engine.segment(micrograph)
            total = time.perf_counter() - started
            if best is None or total < best[0]:
                best = (total, segmentation)
        total, segmentation = best
        t = segmentation.timings
        print(f"| {size}x{size} | {total:.2f} | {t['proposals_s']:.2f} | {t['removal_s']:.2f} | "
              f"{t['merging_s']:.2f} | {len(segmentation.materials)} |", flush=True)


if __name__ == "__main__":
    main()
