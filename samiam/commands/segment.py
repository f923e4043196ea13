"""``samiam segment PATH... --out DIR``: label maps, overlays and JSON for images and folders."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from samiam.commands import positive_int
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
                    "(COCO RLE masks, scores, settings) into --out for every image. Folders are searched "
                    "recursively and their sub-folders mirrored in --out; samiam's own *.labels.png and "
                    "*.overlay.png are skipped; a `samiam synth` data set folder means its images/. "
                    "NAME is the file name without its extension, or with it when two images in one "
                    "folder share a stem (x.jpg and x.tiff give x.jpg.* and x.tiff.*).")
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created when needed)")
    add_stack_argument(parser)
    parser.add_argument("--materials", type=positive_int, help="number of materials K, when known")
    parser.add_argument("--max-materials", type=positive_int, help="upper bound when K is estimated")
    parser.add_argument("--model", choices=("vit_b", "vit_l", "vit_h"), help="SAM model type")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file")
    parser.add_argument("--model-dir", type=Path, help="folder with the official SAM checkpoints")
    parser.add_argument("--proposer", choices=("auto", "sam", "classical"),
                        help="where the masks come from: sam (needs a checkpoint), classical (weight-free), "
                             "or auto: SAM when its checkpoint is found, else classical (default)")
    parser.add_argument("--embedder", help="texture embedder name (default: the benchmarked default)")
    parser.add_argument("--embedder-checkpoint", type=Path, help="ResNet-18 state dict for --embedder resnet18")
    parser.add_argument("--proposals", type=Path,
                        help="boost these masks instead of generating them: an .npz with array 'masks' "
                             "(N, H, W) bool, or a folder of NAME.npz files, NAME as in the outputs")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any engine setting, e.g. --set removal.tiny_child=0.03 (repeatable)")
    parser.add_argument("--report", action="store_true",
                        help="also measure every material (area fraction; particle count and sizes; layer "
                             "thickness and roughness; in nm when the pixel size is known) into NAME.json "
                             "and NAME.report.png, and write measurements.csv and a size histogram per "
                             "particle material (MATERIAL.UNIT.sizes.png) into --out")
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


@dataclass(frozen=True)
class InputImage:
    """One image to segment and the name of its outputs."""

    path: Path
    """The image file, as found."""
    name: Path
    """Where its outputs go, relative to --out and without the output suffixes: ``sub/x`` for
    ``FOLDER/sub/x.png``, ``sub/x.png`` when ``FOLDER/sub`` also holds another ``x.*`` image."""


def find_images(paths: list[Path]) -> list[InputImage]:
    """The images named by ``paths``: files as given, plus the images anywhere below given folders
    (sorted; a ``samiam synth`` data set folder stands for its images/ sub-folder).

    Raises :class:`SamiamError` when two images would get the same output name.
    """
    from samiam.microscope import without_covered_ser
    from samiam.synth.dataset import images_folder

    found: dict[Path, tuple[Path, Path]] = {}  # resolved file -> (file, path relative to its root)
    for path in paths:
        if path.is_dir():
            root = images_folder(path) or path
            images = without_covered_ser(sorted(file for file in root.rglob("*") if _is_image(file)))
            files = [(file, file.relative_to(root)) for file in images]
        else:
            files = [(path, Path(path.name))]
        for file, relative in files:
            found.setdefault(file.resolve(), (file, relative))
    return _name_outputs(list(found.values()))


def _is_image(path: Path) -> bool:
    """An image file to segment: a known image suffix, and not an image samiam segment wrote."""
    from samiam.outputs import REPORT_SUFFIX, SIZES_SUFFIX, SUFFIXES

    written = (SUFFIXES["labels"], SUFFIXES["overlay"], REPORT_SUFFIX, SIZES_SUFFIX)
    return path.suffix.lower() in image_suffixes() and not path.name.endswith(written) and path.is_file()


def _name_outputs(files: list[tuple[Path, Path]]) -> list[InputImage]:
    """(file, path relative to its root) pairs -> InputImages whose output names all differ:
    the relative path without its suffix, or with it where stems collide."""
    stems = Counter(relative.with_suffix("") for _, relative in files)
    owners: dict[Path, Path] = {}
    for file, relative in files:
        stem = relative.with_suffix("")
        name = stem if stems[stem] == 1 else relative
        if name in owners:
            raise SamiamError(f"{owners[name]} and {file} would both write {name}.* into the output folder; "
                              "segment them into separate --out folders")
        owners[name] = file
    return [InputImage(file, name) for name, file in owners.items()]


def load_proposals(source: Path, image: InputImage, shape: tuple[int, int]):
    """Masks for ``image`` from an .npz file or from ``source/NAME.npz``: (N, H, W) bool."""
    import numpy as np

    from samiam.masks import as_mask_stack

    path = source / f"{image.name}.npz" if source.is_dir() else source
    try:
        with np.load(path) as archive:
            masks = archive["masks"]
    except FileNotFoundError:
        raise SamiamError(f"no proposals: {path} does not exist") from None
    except KeyError:
        raise SamiamError(f"{path} has no array named 'masks' (expected shape (N, H, W), bool)") from None
    except (OSError, ValueError) as error:
        raise SamiamError(f"cannot read proposals {path}: {error}") from None
    return as_mask_stack(masks, shape)


def write_image_outputs(out: Path, image: InputImage, micrograph, segmentation,
                        measurements=None) -> str:
    """:func:`samiam.outputs.write_outputs` under ``out / image.name``; creates the folders it
    needs (so a run whose every image fails leaves none) and names I/O errors. Returns the
    outputs' name relative to ``out`` (``sub/x``, ``x.frame000``)."""
    from samiam.outputs import write_outputs

    try:
        frame = micrograph.name[len(image.path.stem):]  # ".frame000" for a stack's frames, else ""
        write_outputs(out / image.name.parent, micrograph, segmentation, image.name.name + frame, measurements)
        return (image.name.parent / (image.name.name + frame)).as_posix()
    except OSError as error:
        raise SamiamError(f"cannot write its outputs into {out}: {error.strerror or error}") from None


def failure_line(path: Path, error: SamiamError) -> str:
    """``PATH: problem``, naming the image at ``path`` once (image errors already start with it)."""
    message = str(error)
    return message if message.startswith(f"{path}: ") else f"{path}: {message}"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from samiam.io import iter_micrographs
    from samiam.pipeline import Engine
    from samiam.report import write_run_report

    settings = settings_from_args(args)
    if args.out.exists() and not args.out.is_dir():
        raise SamiamError(f"--out {args.out} is a file, not a folder")
    images = find_images(args.paths)
    if not images:
        raise SamiamError(f"no images found in {', '.join(map(str, args.paths))} "
                          f"(looked for {', '.join(sorted(image_suffixes()))})")
    engine = Engine(settings)
    failed = []
    measured = []  # (output name, Measurements) with --report
    with logging_redirect_tqdm():  # log lines above the progress bar, not inside it
        for image in tqdm(images, desc="segment", unit="image"):
            try:
                for micrograph in iter_micrographs(image.path, settings.image, args.stack):
                    if args.proposals:
                        masks = load_proposals(args.proposals, image, micrograph.shape)
                        segmentation = engine.boost(micrograph, masks)
                    else:
                        segmentation = engine.segment(micrograph)
                    measurements = segmentation.measure() if args.report else None
                    name = write_image_outputs(args.out, image, micrograph, segmentation, measurements)
                    if measurements is not None:
                        measured.append((name, measurements))
            except SamiamError as error:
                failed.append(image)
                tqdm.write(f"skipped {failure_line(image.path, error)}")
    if measured:
        try:
            write_run_report(args.out, measured)
        except OSError as error:
            raise SamiamError(f"cannot write the run's measurements into {args.out}: "
                              f"{error.strerror or error}") from None
    done = len(images) - len(failed)
    print(f"segmented {done} of {len(images)} images into {args.out}"
          + (f"; {len(failed)} failed: {', '.join(str(image.path) for image in failed)}" if failed else ""))
    return 1 if failed else 0
