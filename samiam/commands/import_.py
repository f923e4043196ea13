"""``samiam import FOLDER --out DIR``: a folder of micrographs (microscope files included) to
Label Studio tasks, and optionally a ready Label Studio project."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from samiam.commands.segment import add_stack_argument, failure_line, find_images
from samiam.errors import SamiamError

API_KEY_ENV = "LABEL_STUDIO_API_KEY"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="turn a folder of micrographs into Label Studio tasks (and a project)",
        description="Writes, per image, NAME.png (8-bit view, 0.5-99.5 % stretch), NAME.tif (full-range "
                    "float32, segmented by the backend) and a task in DIR/tasks.json, which Label Studio "
                    "imports as it is. With --label-studio it also creates the project (API key from "
                    f"${API_KEY_ENV}), adds the images and connects the backend.")
    parser.add_argument("folder", type=Path, help="folder of images and microscope files")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    add_stack_argument(parser)
    parser.add_argument("--url-prefix", help="task URLs are this + the file's path in --out "
                                             "(default: Label Studio local-files URLs, /data/local-files/?d=...)")
    parser.add_argument("--document-root", type=Path,
                        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT, which local-files URLs are relative to "
                             "(default: the parent of --out)")
    parser.add_argument("--label-studio", metavar="URL", help="also create a project in this Label Studio")
    parser.add_argument("--labels", help="the project's material labels, comma-separated, e.g. 'SrTiO3,Ge,Pt/C'")
    parser.add_argument("--title", help="project title (default: the folder's name)")
    parser.add_argument("--smart", action="store_true",
                        help="add smart KeyPointLabels and RectangleLabels tools (same labels) to the project: "
                             "a click or box asks the backend for that region (auto-annotation)")
    parser.add_argument("--upload", action="store_true",
                        help="upload the PNGs instead of linking --out as local-files storage (tasks then hold "
                             "only the image: no pixel size, and the backend segments the 8-bit view)")
    parser.add_argument("--backend", metavar="URL", help="connect the samiam backend at this URL to the project")
    parser.add_argument("--predict", action="store_true", help="then ask the backend to pre-annotate every task")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    from tqdm import tqdm

    from samiam.io import check_segmentable, iter_micrographs
    from samiam.labelstudio.tasks import import_task, url_base
    from samiam.settings import Settings
    from samiam.views import write_views

    _check_arguments(args)
    if not args.folder.is_dir():
        raise SamiamError(f"{args.folder} is not a folder")
    files = [image.path for image in find_images([args.folder])]
    if not files:
        raise SamiamError(f"no images or microscope files in {args.folder}")
    settings = Settings.from_env()
    base = url_base(args.out, args.url_prefix, args.document_root or args.out.resolve().parent)
    args.out.mkdir(parents=True, exist_ok=True)
    tasks, pngs, made_by, failed = [], [], {}, []
    for path in tqdm(files, desc="import", unit="file"):
        try:
            for micrograph in iter_micrographs(path, settings.image, args.stack):
                check_segmentable(micrograph)  # a task nothing could pre-label
                if micrograph.name in made_by:
                    raise SamiamError(f"{path.name} and {made_by[micrograph.name].name} would both be written as "
                                      f"{micrograph.name}.png; rename one")
                made_by[micrograph.name] = path
                views = write_views(args.out, micrograph)
                urls = [base + quote(file.name) for file in (views.png, views.original)]
                tasks.append(import_task(*urls, size=micrograph.shape, source=str(path), signal=micrograph.signal,
                                         pixel_size=micrograph.pixel_size, pixel_unit=micrograph.pixel_unit))
                pngs.append(views.png)
        except SamiamError as error:
            failed.append(path)
            tqdm.write(f"skipped {failure_line(path, error)}")
    (args.out / "tasks.json").write_text(json.dumps(tasks, indent=1, allow_nan=False))
    print(f"imported {len(files) - len(failed)} of {len(files)} files as {len(tasks)} tasks into "
          f"{args.out / 'tasks.json'}" + (f"; {len(failed)} failed: {', '.join(p.name for p in failed)}"
                                         if failed else ""))
    if args.label_studio and tasks:
        _set_up_project(args, tasks, pngs)
    return 1 if failed else 0


def _check_arguments(args: argparse.Namespace) -> None:
    if args.label_studio is None:
        extra = [flag for flag, given in (("--labels", args.labels), ("--upload", args.upload), ("--smart", args.smart),
                                          ("--backend", args.backend), ("--predict", args.predict)) if given]
        if extra:
            raise SamiamError(f"{', '.join(extra)} need --label-studio URL")
        return
    if not args.labels:
        raise SamiamError("--label-studio needs --labels, e.g. --labels 'SrTiO3,Ge,Pt/C'")
    if not os.environ.get(API_KEY_ENV):
        raise SamiamError(f"--label-studio needs the API key in the environment variable {API_KEY_ENV}")
    if args.predict and not args.backend:
        raise SamiamError("--predict needs --backend URL (the samiam backend that makes the predictions)")


def _set_up_project(args: argparse.Namespace, tasks: list[dict], pngs: list[Path]) -> None:
    from samiam.labelstudio import projects
    from samiam.labelstudio.client import LabelStudioAccess
    from samiam.labelstudio.config import brush_label_config

    access = LabelStudioAccess(args.label_studio, os.environ[API_KEY_ENV])
    config = brush_label_config(args.labels.split(","), smart=args.smart)
    project = projects.create_project(access, args.title or args.folder.resolve().name, config)
    if args.upload:
        created = projects.upload_images(access, project, pngs)
    else:
        projects.link_local_folder(access, project, args.out.resolve())
        created = projects.import_tasks(access, project, tasks)
    print(f"Label Studio project {project} at {args.label_studio}: {created} tasks")
    if args.backend:
        backend = projects.connect_backend(access, project, args.backend, interactive=args.smart)
        print(f"connected the backend {args.backend} (ML backend {backend})")
    if args.predict:
        projects.request_predictions(access, project)
        print("requested predictions for every task")
