"""Score segmentations against ground truth as the paper does: per image, per difficulty class, per method.

Ground truth comes from the synthetic generator's folder layout or from a Label Studio JSON
export (:func:`read_ground_truth`); predictions from folders of ``NAME.labels.png`` label maps
(what ``samiam segment`` writes) or ``NAME.npz`` mask stacks (raw proposals), matched to the
ground truth by ``NAME`` (:func:`find_predictions`). :func:`evaluate` scores every pair with
:func:`samiam.metrics.score_image` and summarises per difficulty class; the rest writes the
results as a table, CSV files and bar charts like the paper's Figures 4 and 5.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from samiam import masks as masklib
from samiam.errors import MaskSetError, SamiamError
from samiam.metrics import ALL, METRICS, PAIR_METRICS, score_image, summarize
from samiam.settings import MetricSettings

log = logging.getLogger(__name__)

LABEL_MAP_SUFFIX = ".labels.png"
MASKS_SUFFIX = ".npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
"""Label Studio prefixes uploaded file names with 8 hex digits and a dash."""
WEIGHTED_METRICS = tuple(f"weighted_{m}" for m in (*PAIR_METRICS, *(f"boundary_{m}" for m in PAIR_METRICS)))
"""Per-image metrics recomputed with per-label weights (the paper's "weighted" variant)."""
TABLE_COLUMNS = {"iou": "mIoU", "recall": "recall", "precision": "prec", "f1": "F1",
                 "boundary_iou": "bIoU", "fpr": "FPR", "pq": "PQ", "weighted_iou": "wIoU"}
"""Metrics shown in the printed table, with their column headers."""
PERFORMANCE_CHART = ("iou", "recall", "precision", "f1", "boundary_iou", "boundary_f1", "pq",
                     "weighted_iou", "weighted_f1")
"""Panels of ``performance.png`` (the paper's Figure 4), those present in the evaluation."""
ERROR_CHART = ("fpr", "boundary_fpr", "weighted_fpr")
"""Panels of ``errors.png`` (the paper's Figure 5), those present in the evaluation."""
CHART_TITLES = {"iou": "mIoU", "f1": "F1", "fpr": "FPR", "pq": "PQ", "boundary_iou": "boundary IoU",
                "boundary_f1": "boundary F1", "boundary_fpr": "boundary FPR", "weighted_iou": "weighted mIoU",
                "weighted_f1": "weighted F1", "weighted_fpr": "weighted FPR"}
"""Panel titles where the metric's name is not readable as it is."""
CHART_COLUMNS = 4
"""Panels per row of a chart."""
CHART_PANEL_INCHES = (3.2, 3.0)
"""Width and height of one chart panel."""
CHART_LEGEND_INCHES = 0.35
"""Height of the legend strip above the panels."""


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of one image.

    name: image name without suffix; prediction files ``NAME.labels.png`` / ``NAME.npz`` match it.
    masks: (G, H, W) bool, one mask per ground-truth region.
    labels: (G,) material name of each mask (used to look up weights).
    difficulty: the image's difficulty class, or None when unknown.
    """

    name: str
    masks: np.ndarray
    labels: tuple[str, ...]
    difficulty: int | str | None


@dataclass(frozen=True)
class Evaluation:
    """Scores of every method on every image and their summaries.

    rows: one dict per (method, image): ``label``, ``name``, ``difficulty``, ``missing_prediction``
        and every metric of :class:`samiam.metrics.ImageScores` (plus ``weighted_*`` with weights).
    summary: one dict per (method, difficulty class, then :data:`samiam.metrics.ALL`):
        ``label``, ``difficulty``, ``n_images`` and the mean of every metric.
    missing: per method, the names of images without a prediction file (scored as empty).
    unmatched: per method, the names of prediction files without ground truth (ignored).
    metrics: the metric columns of ``rows`` and ``summary``.
    """

    rows: list[dict]
    summary: list[dict]
    missing: dict[str, list[str]]
    unmatched: dict[str, list[str]]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class LabelWeights:
    """Weights of ground-truth masks by label (the paper gives easy labels 10, hard ones 1).

    every_image: ``{label: weight}``; per_image: ``{image name: {label: weight}}``, which wins
    over ``every_image`` for that image. Labels listed nowhere weigh 1.
    """

    every_image: Mapping[str, float]
    per_image: Mapping[str, Mapping[str, float]]

    def of(self, truth: GroundTruth) -> np.ndarray:
        """(G,) float64 weight of each ground-truth mask of ``truth``."""
        weights = {**self.every_image, **self.per_image.get(truth.name, {})}
        return np.array([float(weights.get(label, 1.0)) for label in truth.labels])


def read_ground_truth(path: Path) -> list[GroundTruth]:
    """Ground truth from a synthetic data set folder or a Label Studio JSON export file."""
    path = Path(path)
    if path.is_dir():
        return read_synthetic_ground_truth(path)
    if path.suffix.lower() == ".json" and path.is_file():
        return read_labelstudio_export(path)
    raise SamiamError(f"ground truth {path} is neither a data set folder (with manifest.json) "
                      "nor a Label Studio JSON export file")


def read_synthetic_ground_truth(folder: Path) -> list[GroundTruth]:
    """The synthetic generator's layout (:mod:`samiam.synth.dataset`): ``folder/manifest.json``
    and ``folder/gt/<name>/<k>_<material>.png`` 0/255 masks."""
    from samiam.synth import dataset

    try:
        manifest = dataset.read_manifest(folder)
    except ValueError as error:
        raise SamiamError(f"cannot read {folder / dataset.MANIFEST}: {error}") from None
    if not manifest:
        raise SamiamError(f"{folder / dataset.MANIFEST} lists no images")
    images = []
    for entry in manifest:
        try:
            masks, materials = dataset.read_ground_truth(folder, entry["name"])
        except (OSError, ValueError) as error:
            raise MaskSetError(f"ground truth of {entry['name']!r} in {folder / 'gt'}: {error}") from None
        images.append(GroundTruth(name=entry["name"], masks=masks, labels=tuple(materials),
                                  difficulty=entry.get("difficulty")))
    return images


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (OSError, ValueError) as error:
        raise SamiamError(f"cannot read {path}: {error}") from None


def read_labelstudio_export(path: Path) -> list[GroundTruth]:
    """Ground truth from a Label Studio JSON export: one mask per brush label of each task.

    Uses each task's first annotation that was not cancelled; brush regions with the same label
    are merged into one mask. The image name is the file name in ``data.image`` without Label
    Studio's ``xxxxxxxx-`` upload prefix and suffix; the difficulty is ``data.difficulty`` when
    present. Tasks without a usable annotation are skipped with a warning.
    """
    from samiam.errors import AnnotationError
    from samiam.labelstudio.results import annotation_materials

    try:
        tasks = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SamiamError(f"cannot read Label Studio export {path}: {error}") from None
    if not isinstance(tasks, list) or not tasks:
        raise SamiamError(f"{path} holds no tasks: expected Label Studio's JSON export (a list of tasks)")
    images = []
    for task in tasks:
        data = task.get("data", {}) if isinstance(task, dict) else {}
        if not isinstance(data.get("image"), str):
            raise SamiamError(f"task {task.get('id') if isinstance(task, dict) else task!r} in {path} "
                              "has no data.image")
        name = labelstudio_image_name(data["image"])
        annotation = next((a for a in task.get("annotations", []) if not a.get("was_cancelled")), None)
        try:
            masks, labels = annotation_materials(annotation["result"] if annotation else [])
        except AnnotationError as error:
            raise SamiamError(f"task {task.get('id')} ({name}) in {path}: bad brush result: {error}") from None
        if not len(masks):
            log.warning("task %s (%s) has no brush annotation: skipped", task.get("id"), name)
            continue
        images.append(GroundTruth(name=name, masks=masks, labels=labels, difficulty=data.get("difficulty")))
    if not images:
        raise SamiamError(f"no task in {path} has a brush annotation")
    return images


def labelstudio_image_name(reference: str) -> str:
    """``data.image`` of a task -> image name: ``/data/upload/3/1a2b3c4d-scene.png`` -> ``scene``.

    Handles local-storage URLs (``/data/local-files/?d=dir/scene.png``) and cloud URLs too.
    """
    url = urlparse(reference)
    path = parse_qs(url.query).get("d", [url.path])[0]
    return _stem(UPLOAD_PREFIX.sub("", path.rsplit("/", 1)[-1]))


def find_predictions(folder: Path) -> dict[str, Path]:
    """Prediction files in ``folder``: ``{NAME: path}`` for ``NAME.labels.png`` and ``NAME.npz``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SamiamError(f"prediction folder {folder} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        for suffix in (LABEL_MAP_SUFFIX, MASKS_SUFFIX):
            if path.name.endswith(suffix):
                name = path.name[:-len(suffix)]
                if name in found:
                    raise SamiamError(f"two predictions for {name!r} in {folder}: {found[name].name} and "
                                      f"{path.name}; keep one")
                found[name] = path
    if not found:
        raise SamiamError(f"no predictions in {folder} (looked for NAME{LABEL_MAP_SUFFIX} label maps and "
                          f"NAME{MASKS_SUFFIX} files with an array 'masks')")
    return found


def read_prediction(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A prediction file -> ``(M, H, W) bool``; raises :class:`MaskSetError` naming the file when
    its size is not ``shape``."""
    path = Path(path)
    if path.name.endswith(MASKS_SUFFIX):
        try:
            with np.load(path) as archive:
                masks = archive["masks"]
        except KeyError:
            raise SamiamError(f"{path} has no array named 'masks' (expected shape (N, H, W), bool)") from None
        except (OSError, ValueError) as error:
            raise SamiamError(f"cannot read {path}: {error}") from None
    else:
        labels = _read_png(path)
        if labels.ndim != 2 or labels.dtype.kind not in "iu":
            raise SamiamError(f"{path} is not a label map (expected a one-channel integer PNG, got "
                              f"shape {labels.shape}, dtype {labels.dtype})")
        masks = masklib.from_label_map(labels)
    try:
        return masklib.as_mask_stack(masks, shape)
    except MaskSetError as error:
        raise MaskSetError(f"{path}: {error}") from None


def read_weights(path: Path) -> LabelWeights:
    """Per-label weights from a JSON object: numbers are weights of a label in every image, objects
    are ``{label: weight}`` for the image of that name, e.g.
    ``{"Pt/C": 10, "SrTiO3": 1, "scene_0001": {"SrTiO3": 10}}``."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise SamiamError(f"cannot read weights {path}: {error}") from None
    if not isinstance(document, dict):
        raise SamiamError(f"{path}: weights must be a JSON object, e.g. {{\"Pt/C\": 10, \"SrTiO3\": 1}}")
    per_image = {k: v for k, v in document.items() if isinstance(v, dict)}
    every_image = {k: v for k, v in document.items() if k not in per_image}
    for where, values in (("", every_image), *((f" for image {k!r}", v) for k, v in per_image.items())):
        bad = {k: v for k, v in values.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
        if bad:
            raise SamiamError(f"{path}: weights{where} must be non-negative numbers; got {bad}")
    return LabelWeights(every_image=every_image, per_image=per_image)


def evaluate(ground_truth: Sequence[GroundTruth], predictions: Mapping[str, Mapping[str, Path]],
             settings: MetricSettings | None = None, weights: LabelWeights | None = None,
             progress=None) -> Evaluation:
    """Score every method's predictions on every ground-truth image.

    predictions: ``{method label: {image name: prediction file}}`` (see :func:`find_predictions`).
    An image without a prediction file is scored as an empty prediction (all zeros) and listed in
    :attr:`Evaluation.missing`. ``progress`` wraps the image loop (e.g. ``tqdm``).
    """
    settings = settings or MetricSettings()
    metrics = METRICS + (WEIGHTED_METRICS if weights is not None else ())
    names = {truth.name for truth in ground_truth}
    rows: list[dict] = []
    missing = {label: [] for label in predictions}
    for truth in (progress or iter)(ground_truth):
        shape = truth.masks.shape[1:]
        gt_weights = weights.of(truth) if weights is not None else None
        for label, files in predictions.items():
            path = files.get(truth.name)
            if path is None:
                missing[label].append(truth.name)
            pred = read_prediction(path, shape) if path is not None else np.zeros((0, *shape), bool)
            scores = score_image(pred, truth.masks, settings=settings).as_dict()
            if gt_weights is not None:
                weighted = score_image(pred, truth.masks, weights=gt_weights, settings=settings)
                scores.update({m: getattr(weighted, m.removeprefix("weighted_")) for m in WEIGHTED_METRICS})
            rows.append({"label": label, "name": truth.name, "difficulty": truth.difficulty,
                         "missing_prediction": path is None, **scores})
    summary = [{"label": label, **row} for label in predictions
               for row in summarize([r for r in rows if r["label"] == label], metrics)]
    unmatched = {label: sorted(set(files) - names) for label, files in predictions.items()}
    return Evaluation(rows=rows, summary=summary, missing=missing, unmatched=unmatched, metrics=metrics)


def format_table(evaluation: Evaluation) -> str:
    """Plain-text table: one line per difficulty class and overall, one column group per method."""
    labels = list(dict.fromkeys(row["label"] for row in evaluation.summary))
    columns = [(m, header) for m, header in TABLE_COLUMNS.items() if m in evaluation.metrics]
    width = 7
    group = width * len(columns)
    lines = ["difficulty  images " + "".join(f" | {label:^{group}.{group}}" for label in labels),
             " " * 19 + "".join(" | " + "".join(f"{h:>{width}}" for _, h in columns) for _ in labels)]
    lines.append("-" * len(lines[1]))
    by_key = {(row["label"], row["difficulty"]): row for row in evaluation.summary}
    for difficulty in dict.fromkeys(row["difficulty"] for row in evaluation.summary):
        first = by_key[(labels[0], difficulty)]
        cells = "".join(" | " + "".join(f"{by_key[(label, difficulty)][m]:>{width}.2f}" for m, _ in columns)
                        for label in labels)
        lines.append(f"{difficulty!s:<11} {first['n_images']:>6} " + cells)
    return "\n".join(lines)


def write_csv(rows: Sequence[dict], path: Path) -> Path:
    """Write dicts (all with the same keys) as CSV; floats with 4 decimals."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else v)
                          for k, v in row.items()} for row in rows)
    return path


def plot_summary(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """Bar charts like the paper's Figures 4 and 5: one panel per metric, bars per method and
    difficulty class. Writes ``performance.png`` and ``errors.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(row["label"] for row in evaluation.summary))
    classes = list(dict.fromkeys(row["difficulty"] for row in evaluation.summary))
    by_key = {(row["label"], row["difficulty"]): row for row in evaluation.summary}
    paths = []
    for file_name, panels in (("performance.png", PERFORMANCE_CHART), ("errors.png", ERROR_CHART)):
        panels = [m for m in panels if m in evaluation.metrics]
        columns = min(len(panels), CHART_COLUMNS)
        rows = -(-len(panels) // columns)
        figure, axes = plt.subplots(rows, columns, figsize=(CHART_PANEL_INCHES[0] * columns, CHART_PANEL_INCHES[1] * rows + CHART_LEGEND_INCHES), squeeze=False)
        positions = np.arange(len(classes))
        bar = 0.8 / len(labels)
        for axis, metric in zip(axes.flat, panels):
            for i, label in enumerate(labels):
                values = [by_key[(label, c)][metric] for c in classes]
                axis.bar(positions + (i - (len(labels) - 1) / 2) * bar, values, bar, label=label)
            axis.set_title(CHART_TITLES.get(metric, metric))
            axis.set_xticks(positions, [str(c) if c == ALL else f"D{c}" for c in classes])
            axis.set_ylabel("%")
        for axis in axes.flat[len(panels):]:
            axis.set_visible(False)
        figure.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center", ncol=len(labels))
        figure.tight_layout(rect=(0, 0, 1, 1 - CHART_LEGEND_INCHES / figure.get_figheight()))
        paths.append(Path(out_dir) / file_name)
        figure.savefig(paths[-1], dpi=120)
        plt.close(figure)
    return paths


def _stem(name: str) -> str:
    """Image name without an image file suffix: ``scene_0001.png`` -> ``scene_0001``."""
    return name[:-len(Path(name).suffix)] if Path(name).suffix.lower() in IMAGE_SUFFIXES else name
