"""Speed of the booster's mask removal against the plain oracle, on SAM-like mask sets.

Usage::

    python bench/booster_speed.py            # N = 50, 100, 200 at 1024^2 and N = 100 at 4096^2
    python bench/booster_speed.py --quick    # N = 50, 100 at 1024^2, oracle estimated (< 1 min)

Every size runs in its own subprocess, on ONE core (OMP/OPENBLAS/MKL_NUM_THREADS=1 before numpy
is imported; ``torch.set_num_threads(1)`` in the merging run, the only one that imports torch, so
that torch's import does not inflate the removal runs' memory), so that its peak memory can be
read on its own:

* ``peak_rss`` is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that subprocess: the whole
  process, *including* the input mask stack (N*H*W bytes) and the Python/numpy runtime;
* ``extra`` is the ``tracemalloc`` peak of one ``remove_masks`` call: the memory removal itself
  allocates on top of its input (numpy reports its buffers to tracemalloc).

``fast`` is the best of 3 runs of ``remove_masks``. The oracle (``tests/removal_oracle.py``,
full-resolution logical_and per ordered pair, Python loops) is run in full at 1024^2 for N <= 100;
elsewhere, and with ``--quick``, its time is *estimated* as N(N-1) x its mean time per pair,
measured on a sample of pairs. When the full oracle runs, its decisions are compared with the fast
path's. The last line reads ``speedup_vs_oracle=<x> at N=100 1024x1024``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from bench.masksets import sam_like_masks
from samiam.booster.removal import remove_masks

FULL_CASES = [(50, 1024), (100, 1024), (200, 1024), (100, 4096)]
QUICK_CASES = [(50, 1024), (100, 1024)]
ORACLE_MAX_N = 100
ORACLE_SIDE = 1024
MERGE_CASE = (200, 1024)
REPEATS = 3
SEED = 0


def _best_time(function, repeats: int = REPEATS) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def run_case(n: int, size: int, oracle_pairs: int, full_oracle: bool) -> dict:
    """Measure one size in this process; returns a JSON-able dict."""
    from removal_oracle import oracle_pair_seconds, oracle_remove

    masks = sam_like_masks(n, size, SEED)
    flat = np.zeros((size, size), np.float32)  # no image: the paper's rules alone, as the oracle has them
    fast_s, result = _best_time(lambda: remove_masks(masks, flat))
    tracemalloc.start()
    remove_masks(masks, flat)
    extra = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    row = {"n": n, "size": size, "fast_s": fast_s, "extra_mb": extra / 2 ** 20,
           "stack_mb": masks.nbytes / 2 ** 20, "removed": int((~result.keep).sum())}
    if full_oracle:
        started = time.perf_counter()
        reasons = oracle_remove(masks)
        row.update(oracle_s=time.perf_counter() - started, estimated=False,
                   agree=reasons == result.reasons.tolist())
    else:
        row.update(oracle_s=oracle_pair_seconds(masks, oracle_pairs, SEED) * n * (n - 1),
                   estimated=True, agree=None)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return row


def run_merge(n: int, size: int) -> dict:
    """Removal + merging on one SAM-like set; a grey image with one lattice per band."""
    import torch

    from samiam.booster import merge_masks
    from samiam.booster.embedders import make_embedder
    from samiam.settings import MergingSettings

    torch.set_num_threads(1)
    masks = sam_like_masks(n, size, SEED)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    grey = np.zeros((size, size), np.float32)
    for band, period in zip(masks[:3], (6.0, 9.0, 14.0)):
        grey[band] = (np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))[band]
    settings = MergingSettings()
    embedder = make_embedder(settings)

    def boost():
        removal = remove_masks(masks, grey)
        kept = np.flatnonzero(removal.keep)
        return merge_masks(grey, masks[kept], np.ones(len(kept), np.float32), settings, embedder)

    seconds, _ = _best_time(boost, repeats=1)
    return {"n": n, "size": size, "boost_s": seconds}


def _in_subprocess(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"benchmark subprocess {args} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _merge_available() -> bool:
    try:
        from samiam.booster import merge_masks  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=50,100 at 1024^2, oracle estimated")
    parser.add_argument("--case", nargs=2, type=int, metavar=("N", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--merge", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--oracle-pairs", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--full-oracle", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        n, size = args.case
        row = run_merge(n, size) if args.merge else run_case(n, size, args.oracle_pairs, args.full_oracle)
        print(json.dumps(row))
        return 0

    print("one core: OMP/OPENBLAS/MKL_NUM_THREADS=1 (and torch.set_num_threads(1) for merging);"
          " SAM-like masks (bench/masksets.py), seed 0")
    print("peak_rss = ru_maxrss of a subprocess per size (includes the input stack);"
          " extra = tracemalloc peak of one remove_masks call")
    header = f"{'N':>4} {'size':>9} {'fast_s':>8} {'oracle_s':>9} {'':>9} {'speedup':>8} " \
             f"{'removed':>7} {'stack_MB':>8} {'extra_MB':>8} {'peak_rss_MB':>11} agree"
    print(header)
    rows = []
    for n, size in QUICK_CASES if args.quick else FULL_CASES:
        full = not args.quick and size == ORACLE_SIDE and n <= ORACLE_MAX_N
        pairs = 20 if args.quick or size != ORACLE_SIDE else args.oracle_pairs
        row = _in_subprocess("--case", str(n), str(size), "--oracle-pairs", str(pairs),
                             *(["--full-oracle"] if full else []))
        rows.append(row)
        speedup = row["oracle_s"] / row["fast_s"]
        agree = "-" if row["agree"] is None else ("yes" if row["agree"] else "NO")
        print(f"{n:>4} {size:>4}x{size:<4} {row['fast_s']:>8.3f} {row['oracle_s']:>9.2f} "
              f"{'estimated' if row['estimated'] else 'measured':>9} {speedup:>7.0f}x {row['removed']:>7} "
              f"{row['stack_mb']:>8.0f} {row['extra_mb']:>8.1f} {row['peak_rss_mb']:>11.0f} {agree}")
    if _merge_available():
        merged = _in_subprocess("--case", *map(str, MERGE_CASE), "--merge")
        print(f"removal+merging at N={MERGE_CASE[0]} {MERGE_CASE[1]}x{MERGE_CASE[1]}: "
              f"{merged['boost_s']:.2f} s (one run)")
    else:
        print("removal+merging: skipped, samiam.booster.merge_masks is not importable yet")
    reference = next(r for r in rows if (r["n"], r["size"]) == (100, 1024))
    print(f"speedup_vs_oracle={reference['oracle_s'] / reference['fast_s']:.0f} at N=100 1024x1024")
    return 0


if __name__ == "__main__":
    sys.exit(main())
