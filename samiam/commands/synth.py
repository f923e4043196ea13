"""``samiam synth --out DIR --n N``: a labelled synthetic benchmark (images, ground truth, manifest)."""

from __future__ import annotations

import logging
from pathlib import Path

from samiam.commands import positive_int
from samiam.errors import SettingsError

log = logging.getLogger(__name__)


def _difficulties(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"--difficulty expects a comma-separated list such as 1,2,3; got {text!r}") from None
    if not values or any(v not in (1, 2, 3) for v in values):
        raise SettingsError(f"--difficulty values must be 1, 2 or 3; got {text!r}")
    return values


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth", help="write a labelled synthetic STEM benchmark",
        description="Writes DIR/images/NAME.png, DIR/gt/NAME/K_MATERIAL.png, DIR/manifest.json and, with "
                    "--proposals, DIR/proposals/NAME.npz (a simulation of SAM's failure modes, not SAM).")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--n", type=positive_int, default=10, help="images per difficulty class (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; image i uses seed+i (default 0)")
    parser.add_argument("--size", type=int, default=1024, help="image side in px (default 1024)")
    parser.add_argument("--difficulty", default="1,2,3", help="classes to generate, e.g. 2,3 (default 1,2,3)")
    parser.add_argument("--proposals", action="store_true",
                        help="also write simulated SAM+ proposals for `samiam segment --proposals`")
    parser.set_defaults(func=run)


def run(args) -> int:
    from samiam.synth.dataset import write_dataset

    manifest = write_dataset(args.out, args.n, args.seed, _difficulties(args.difficulty), args.size,
                             proposals=args.proposals)
    log.info("wrote %d images to %s", len(manifest), args.out)
    return 0
