"""The files ``samiam segment`` writes for one image: label map, overlay and JSON summary.

* ``NAME.labels.png``: (H, W) uint16 PNG, 0 = unsegmented, k = material k (1-based);
* ``NAME.overlay.png``: the image with every material tinted and outlined in its own colour,
  and a legend listing each material's number and score;
* ``NAME.json``: image facts (size, bit depth, pixel size and unit, source file, the signal
  taken from a microscope file), proposer, embedder, settings, timings and, per material, its
  score, area, bounding box and COCO RLE mask (:func:`samiam.masks.rle_encode`);

given measurements (``samiam segment --report``), also their ``NAME.report.png``
(:mod:`samiam.report`) and a ``measurements`` key in ``NAME.json``
(:meth:`samiam.measure.Measurements.to_dict`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from samiam import masks as masklib
from samiam.io import Micrograph

if TYPE_CHECKING:
    from samiam.measure import Measurements
    from samiam.pipeline import Segmentation

SUFFIXES = {"labels": ".labels.png", "overlay": ".overlay.png", "json": ".json"}
REPORT_SUFFIX = ".report.png"
"""File name ending of the per-image figure of ``--report`` (:mod:`samiam.report`); NAME comes before it."""
SIZES_SUFFIX = ".sizes.png"
"""File name ending of ``--report``'s per-material size histograms across images."""
"""File name endings of the outputs, by kind; NAME comes before them."""

PALETTE = np.array([
    (230, 159, 0),    # orange
    (86, 180, 233),   # sky blue
    (0, 158, 115),    # bluish green
    (240, 228, 66),   # yellow
    (0, 114, 178),    # blue
    (213, 94, 0),     # vermillion
    (204, 121, 167),  # reddish purple
], np.uint8)
"""Material colours (RGB), Okabe & Ito's colour-blind-safe palette; reused cyclically past 7."""

TINT_OPACITY = 0.4
"""Weight of the material colour when tinting its pixels (the image keeps the rest)."""
OUTLINE_PER_SIDE = 1 / 400
"""Outline thickness as a fraction of the shorter image side (at least 1 px)."""
LEGEND_TEXT_PER_SIDE = 1 / 50
"""Legend text height as a fraction of the shorter image side ..."""
LEGEND_MIN_TEXT_PX = 10
"""... but never smaller than this many pixels, so that it stays readable."""
LEGEND_TEXT_PX_PER_STROKE = 12
"""Text height per pixel of stroke width."""
LEGEND_BACKGROUND_OPACITY = 0.7
"""How much the black legend box hides the image below it."""
LEGEND_FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGEND_TEXT_COLOUR = (255, 255, 255)


def write_outputs(out_dir: Path, micrograph: Micrograph, segmentation: Segmentation,
                  name: str | None = None, measurements: Measurements | None = None) -> dict[str, Path]:
    """Write ``NAME.labels.png``, ``NAME.overlay.png`` and ``NAME.json`` into ``out_dir``, and
    with ``measurements`` ``NAME.report.png``.

    ``NAME`` is ``name``, by default ``micrograph.name``; ``out_dir`` is created when missing.
    Returns the paths as ``{"labels": ..., "overlay": ..., "json": ...}`` (and ``"report"``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = name or micrograph.name
    paths = {kind: out_dir / f"{name}{suffix}" for kind, suffix in SUFFIXES.items()}
    write_png(paths["labels"], segmentation.label_map())
    names = [f"material {k} (score {score:.2f})" for k, score in enumerate(segmentation.scores, 1)]
    overlay = render_overlay(micrograph.rgb, segmentation.materials, names)
    write_png(paths["overlay"], cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
    paths["json"].write_text(json.dumps(summary(micrograph, segmentation, measurements), allow_nan=False,
                                        default=_to_json))
    if measurements is not None:
        from samiam.report import write_report

        paths["report"] = out_dir / f"{name}{REPORT_SUFFIX}"
        write_report(paths["report"], overlay, measurements, name)
    return paths


def summary(micrograph: Micrograph, segmentation: Segmentation,
            measurements: Measurements | None = None) -> dict[str, Any]:
    """The JSON document of ``NAME.json`` as a dict (numpy values are converted when dumping).

    Material ``id`` k matches label k of the label map and ``materials[k - 1]``; ``bbox`` is
    ``[x, y, width, height]`` in pixels (all 0 for an empty mask); ``segmentation`` is COCO RLE.
    ``measurements``, when given, go under the key ``measurements``.
    """
    materials = segmentation.materials
    document = {
        "image": {"name": micrograph.name, "height": micrograph.shape[0], "width": micrograph.shape[1],
                  "bit_depth": micrograph.bit_depth, "pixel_size": micrograph.pixel_size,
                  "pixel_unit": micrograph.pixel_unit, "source": micrograph.source,
                  "signal": micrograph.signal},
        "proposer": segmentation.proposer,
        "embedder": segmentation.embedder,
        "settings": segmentation.settings.to_dict(),
        "timings": segmentation.timings,
        "score": segmentation.score,
        "materials": [
            {"id": k, "score": float(score), "area": int(area), "bbox": box.tolist(),
             "segmentation": masklib.rle_encode(mask)}
            for k, (mask, score, area, box) in enumerate(
                zip(materials, segmentation.scores, masklib.areas(materials), _boxes(materials)), 1)],
    }
    if measurements is not None:
        document["measurements"] = measurements.to_dict()
    return document


def render_overlay(rgb: np.ndarray, materials: np.ndarray, names: list[str] | None = None) -> np.ndarray:
    """Tint, outline and label each material on the image.

    rgb: (H, W, 3) uint8; materials: (K, H, W) bool (overlaps are painted smallest on top);
    names: K legend entries, shown as ``"k name"`` (default ``"material k"``).
    Returns (H, W, 3) uint8; with K = 0 it is a copy of ``rgb``.
    """
    materials = masklib.as_mask_stack(materials, rgb.shape[:2])
    if names is None:
        names = [f"material {k}" for k in range(1, len(materials) + 1)]
    colours = PALETTE[np.arange(len(materials)) % len(PALETTE)]
    labels = masklib.to_label_map(materials)
    tinted = labels > 0
    overlay = np.array(rgb, np.uint8, copy=True)
    blend = (1 - TINT_OPACITY) * overlay[tinted] + TINT_OPACITY * colours[labels[tinted] - 1]
    overlay[tinted] = np.rint(blend).astype(np.uint8)
    side = min(rgb.shape[:2])
    thickness = max(1, round(side * OUTLINE_PER_SIDE))
    for mask, colour in zip(materials, colours):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(overlay, contours, -1, colour.tolist(), thickness)
    if len(materials):
        _draw_legend(overlay, [f"{k} {name}" for k, name in enumerate(names, 1)], colours)
    return overlay


def _draw_legend(image: np.ndarray, lines: list[str], colours: np.ndarray) -> None:
    """Draw a box in the top-left corner of ``image`` (H, W, 3) uint8, in place: one row per
    line, a colour swatch then the text."""
    text_px = max(LEGEND_MIN_TEXT_PX, round(min(image.shape[:2]) * LEGEND_TEXT_PER_SIDE))
    stroke = max(1, round(text_px / LEGEND_TEXT_PX_PER_STROKE))
    scale = cv2.getFontScaleFromHeight(LEGEND_FONT, text_px, stroke)
    pad, row = text_px // 2, 2 * text_px
    text_width = max(cv2.getTextSize(line, LEGEND_FONT, scale, stroke)[0][0] for line in lines)
    bottom, right = pad + row * len(lines) + pad, pad + text_px + pad + text_width + pad
    box = image[:bottom, :right]
    box[:] = np.rint(box * (1 - LEGEND_BACKGROUND_OPACITY)).astype(np.uint8)
    for i, (line, colour) in enumerate(zip(lines, colours)):
        top = pad + i * row + (row - text_px) // 2
        cv2.rectangle(image, (pad, top), (pad + text_px, top + text_px), colour.tolist(), cv2.FILLED)
        cv2.putText(image, line, (2 * pad + text_px, top + text_px), LEGEND_FONT, scale,
                    LEGEND_TEXT_COLOUR, stroke, cv2.LINE_AA)


def _boxes(masks: np.ndarray) -> np.ndarray:
    """COCO bounding boxes ``[x, y, width, height]``: (K, H, W) bool -> (K, 4) int64, zeros when empty."""
    y0, x0, y1, x1 = masklib.bounding_boxes(masks).T
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode (H, W) uint8/uint16 or (H, W, 3) BGR uint8 as PNG; I/O errors raise OSError."""
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"OpenCV could not encode a PNG of shape {image.shape} and dtype {image.dtype}")
    path.write_bytes(encoded.tobytes())


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
