"""A synthetic series with known materials, playing a Label Studio project whose annotators label
it: its images as PNG, its ground truth as brush annotations, and a check of predicted names."""

from __future__ import annotations

import io

import numpy as np
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from samiam.labelstudio.config import brush_label_config
from samiam.labelstudio.results import materials_from_results
from samiam.synth.series import generate_series

SERIES = generate_series(3, 1, 5, size=256)
"""One sample, 4 materials (Ge, LaMnO3, SrTiO3, WO3), 5 images of 256 x 256 px; the first 2 get
annotated. The weight-free engine (classical proposer) names 11 of its 11 regions in images 3-5
right after learning from them, 5 of 11 zero-shot (when this was written; tests check both)."""
LABELS = tuple(sorted(SERIES[0].names))
CONFIG = brush_label_config(LABELS)


def png(image: np.ndarray) -> bytes:
    """(H, W) float image in [0, 1] -> 8-bit PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def brushes(scene, names=None) -> list[dict]:
    """The scene's ground truth as an annotator's brush strokes (one per material, SDK RLE),
    labelled ``names`` (default: the true names)."""
    height, width = scene.materials.shape[1:]
    return [{"id": f"r{i}", "from_name": "tag", "to_name": "image", "type": "brushlabels",
             "original_width": width, "original_height": height, "image_rotation": 0,
             "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [name]}}
            for i, (mask, name) in enumerate(zip(scene.materials, names or scene.names))]


def right_names(prediction: dict, scene) -> tuple[int, int]:
    """(regions whose label is the ground-truth material they overlap most, regions)."""
    masks, labels = materials_from_results(prediction["result"])
    overlap = (masks[:, None] & scene.materials[None]).sum(axis=(2, 3))
    return sum(scene.names[int(overlap[k].argmax())] == label for k, label in enumerate(labels)), len(labels)
