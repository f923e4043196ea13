"""``samiam weights download MODEL`` and ``samiam weights list``: the official SAM checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_TYPES = ("vit_b", "vit_l", "vit_h")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "weights", help="download and list SAM checkpoints",
        description="Checkpoints live in --model-dir (default: $SAMIAM_MODEL_DIR or "
                    "~/.cache/samiam/models) under their official file names.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="fetch an official checkpoint and verify its SHA-256")
    download.add_argument("model", choices=MODEL_TYPES, help="SAM model type")
    download.add_argument("--url", help="fetch from this mirror instead of Meta's server")
    list_ = actions.add_parser("list", help="show each model's file, and whether it is present and verified")
    list_.add_argument("--verify", action="store_true", help="hash present files not yet verified")
    for sub in (download, list_):
        sub.add_argument("--model-dir", type=Path, help="checkpoint folder")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from samiam.settings import Settings

    model_dir = args.model_dir or Path(Settings.from_env().proposals.model_dir)
    if args.action == "download":
        from samiam.proposals.checkpoints import download_checkpoint

        print(download_checkpoint(args.model, model_dir, url=args.url))
        return 0
    return _list(model_dir, args.verify)


def _list(model_dir: Path, verify: bool) -> int:
    from samiam.errors import CheckpointError
    from samiam.proposals.checkpoints import OFFICIAL_CHECKPOINTS, is_verified, verify_checkpoint

    print(f"model dir: {model_dir}")
    print(f"{'model':<7} {'file':<22} {'size':>9}  state")
    for model_type in MODEL_TYPES:
        entry = OFFICIAL_CHECKPOINTS[model_type]
        path = model_dir / entry.file_name
        if not path.is_file():
            state = "missing"
        elif is_verified(path, model_type):
            state = "present, verified"
        elif verify:
            try:
                verify_checkpoint(path, model_type)
                state = "present, verified"
            except CheckpointError as error:
                state = f"present, BAD: {error}"
        else:
            state = "present, not verified (use --verify)"
        print(f"{model_type:<7} {entry.file_name:<22} {entry.size / 1e9:>7.2f}GB  {state}")
    return 0
