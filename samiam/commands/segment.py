"""``samiam segment PATH... --out DIR``: label maps, overlays and JSON for images and folders."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from samiam.errors import SamiamError

log = logging.getLogger(__name__)

PLAIN_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def image_suffixes() -> set[str]:
    """Files taken from folders: plain images and the microscope formats of :mod:`samiam.microscope`."""
    from samiam.microscope import READERS

    return PLAIN_IMAGE_SUFFIXES | set(READERS)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment micrographs into one mask per material",
        description="Writes NAME.labels.png (uint16, 0 = unsegmented), NAME.overlay.png and NAME.json "
                    "(COCO RLE masks, scores, settings) for every image.")
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_stack_argument(parser)
    parser.add_argument("--materials", type=int, help="number of materials K, when known")
    parser.add_argument("--max-materials", type=int, help="upper bound when K is estimated")
    parser.add_argument("--model", choices=("vit_b", "vit_l", "vit_h"), help="SAM model type")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file")
    parser.add_argument("--model-dir", type=Path, help="folder with the official SAM checkpoints")
    parser.add_argument("--proposer", choices=("auto", "sam", "classical"))
    parser.add_argument("--embedder", help="texture embedder name (default: the benchmarked default)")
    parser.add_argument("--embedder-checkpoint", type=Path, help="ResNet-18 state dict for --embedder resnet18")
    parser.add_argument("--proposals", type=Path,
                        help="boost these masks instead of generating them: an .npz with array 'masks' "
                             "(N, H, W) bool, or a folder of NAME.npz files matching the images")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any engine setting, e.g. --set removal.tiny_child=0.03 (repeatable)")
    parser.set_defaults(func=run)


def add_stack_argument(parser) -> None:
    parser.add_argument("--stack", choices=("frames", "sum"), default="frames",
                        help="for a stack in a microscope file: each frame as an image (NAME.frame000, ...; "
                             "default) or the sum of all frames")


def settings_from_args(args: argparse.Namespace):
    from samiam.settings import Settings

    flags = {
        "merging.materials": args.materials, "merging.max_materials": args.max_materials,
        "proposals.model_type": args.model, "proposals.checkpoint": args.checkpoint,
        "proposals.model_dir": args.model_dir, "proposals.proposer": args.proposer,
        "merging.embedder": args.embedder, "merging.embedder_checkpoint": args.embedder_checkpoint,
    }
    overrides = {name: str(value) if isinstance(value, Path) else value
                 for name, value in flags.items() if value is not None}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SamiamError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[name.strip()] = value
    return Settings.from_env().replace(overrides)


def find_images(paths: list[Path]) -> list[Path]:
    """Files as given, plus the image files directly inside given folders (sorted; a ``.ser``
    beside the ``.emi`` that names it is read through the ``.emi``)."""
    from samiam.microscope import without_covered_ser

    suffixes = image_suffixes()
    images = []
    for path in paths:
        if path.is_dir():
            images.extend(without_covered_ser(sorted(p for p in path.iterdir()
                                                     if p.suffix.lower() in suffixes)))
        else:
            images.append(path)
    return images


def load_proposals(source: Path, image: Path, shape: tuple[int, int]):
    """Masks for ``image`` from an .npz file or from ``source/<stem>.npz``: (N, H, W) bool."""
    import numpy as np

    from samiam.masks import as_mask_stack

    path = source / f"{image.stem}.npz" if source.is_dir() else source
    try:
        with np.load(path) as archive:
            masks = archive["masks"]
    except FileNotFoundError:
        raise SamiamError(f"no proposals for {image.name}: {path} does not exist") from None
    except KeyError:
        raise SamiamError(f"{path} has no array named 'masks' (expected shape (N, H, W), bool)") from None
    except (OSError, ValueError) as error:
        raise SamiamError(f"cannot read proposals {path}: {error}") from None
    return as_mask_stack(masks, shape)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from samiam.io import iter_micrographs
    from samiam.outputs import write_outputs
    from samiam.pipeline import Engine

    settings = settings_from_args(args)
    images = find_images(args.paths)
    if not images:
        raise SamiamError(f"no images found in {', '.join(map(str, args.paths))} "
                          f"(looked for {', '.join(sorted(image_suffixes()))})")
    args.out.mkdir(parents=True, exist_ok=True)
    engine = Engine(settings)
    failed = []
    for image in tqdm(images, desc="segment", unit="image"):
        try:
            for micrograph in iter_micrographs(image, settings.image, args.stack):
                if args.proposals:
                    masks = load_proposals(args.proposals, image, micrograph.shape)
                    segmentation = engine.boost(micrograph, masks)
                else:
                    segmentation = engine.segment(micrograph)
                write_outputs(args.out, micrograph, segmentation)
        except SamiamError as error:
            failed.append(image)
            tqdm.write(f"skipped {image}: {error}")
    done = len(images) - len(failed)
    print(f"segmented {done} of {len(images)} images into {args.out}"
          + (f"; {len(failed)} failed: {', '.join(p.name for p in failed)}" if failed else ""))
    return 1 if failed else 0
