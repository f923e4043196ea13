"""Label Studio's interactive ``context`` (smart keypoints and rectangles) as engine prompts.

With a ``KeyPointLabels`` or ``RectangleLabels`` tag marked ``smart="true"`` next to the
``BrushLabels``, Label Studio sends each click or box to ``/predict`` in ``params.context``::

    {"result": [{"type": "keypointlabels", "original_width": 1024, "original_height": 768,
                 "value": {"x": 12.5, "y": 40.0, "keypointlabels": ["Ge"]}, "is_positive": true},
                {"type": "rectanglelabels", "original_width": 1024, "original_height": 768,
                 "value": {"x": 10, "y": 20, "width": 30, "height": 15, "rectanglelabels": ["Ge"]}}]}

Coordinates are percentages of the image size; ``is_positive`` is false for a background click
(missing means foreground). Everything in it is untrusted: :func:`prompt_from_context` checks
types, ranges and sizes and raises :class:`PromptError` naming the problem.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from samiam.errors import PromptError
from samiam.interactive import BACKGROUND, FOREGROUND, ClickAnswer, Prompt
from samiam.labelstudio.config import BrushConfig
from samiam.labelstudio.results import predictions_from_segmentation

MAX_CONTEXT_ITEMS = 64
"""More clicks than this in one request are refused (a person does not click that often)."""


@dataclass(frozen=True)
class ClickRequest:
    """What an interactive request asks for.

    prompt: the clicks and box in pixels of the original image.
    label: the label the annotator chose on the smart tool (None: none chosen).
    size: ``(H, W)`` of the image as Label Studio knows it (``original_height``, ``original_width``).
    """

    prompt: Prompt
    label: str | None
    size: tuple[int, int]

    def scaled_to(self, shape: tuple[int, int]) -> ClickRequest:
        """This request on an image of ``shape`` (H, W): the clicks keep their place relative to
        the image when the decoded image's size differs from the one Label Studio reported."""
        if tuple(shape) == self.size:
            return self
        scale = np.array(shape[::-1], np.float64) / np.array(self.size[::-1], np.float64)  # (x, y) factors
        prompt = self.prompt
        box = None if prompt.box is None else prompt.box * np.tile(scale, 2)
        return ClickRequest(Prompt(prompt.points * scale, prompt.labels, box), self.label, tuple(shape))

    def to_json(self) -> dict:
        """Plain JSON values (RQ pickles job arguments; the web tier checked them)."""
        prompt = self.prompt
        return {"points": prompt.points.tolist(), "labels": prompt.labels.tolist(),
                "box": None if prompt.box is None else prompt.box.tolist(), "label": self.label,
                "size": list(self.size)}

    @classmethod
    def from_json(cls, data: dict) -> ClickRequest:
        return cls(Prompt.from_points(data["points"], data["labels"], data["box"]), data["label"],
                   tuple(data["size"]))


def is_interactive(params) -> bool:
    """Whether ``/predict``'s ``params`` carry a non-empty interactive ``context``."""
    return isinstance(params, dict) and isinstance(params.get("context"), dict) \
        and bool(params["context"].get("result"))


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PromptError(f"{what} must be a finite number; got {value!r:.40}")
    return float(value)


def _size(item: dict) -> tuple[int, int]:
    height, width = item.get("original_height"), item.get("original_width")
    if isinstance(height, bool) or isinstance(width, bool) or not isinstance(height, int) \
            or not isinstance(width, int) or height < 1 or width < 1:
        raise PromptError("every context item needs positive integer original_width and original_height")
    return height, width


def prompt_from_context(context) -> ClickRequest:
    """The prompt in Label Studio's interactive ``context`` (see the module docstring).

    Keypoints become points (foreground unless ``is_positive`` is false); the last rectangle
    becomes the box. Raises :class:`PromptError` for anything malformed.
    """
    items = context.get("result") if isinstance(context, dict) else None
    if not isinstance(items, list) or not items:
        raise PromptError("the interactive context needs a non-empty 'result' list of keypoints or rectangles")
    if len(items) > MAX_CONTEXT_ITEMS:
        raise PromptError(f"the interactive context holds {len(items)} items; at most {MAX_CONTEXT_ITEMS}")
    points, labels, box, label, size = [], [], None, None, None
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise PromptError("every context item must be an object with a 'value' object")
        kind, value = item.get("type"), item["value"]
        if kind not in ("keypointlabels", "rectanglelabels"):
            raise PromptError(f"context items must be keypointlabels or rectanglelabels; got {kind!r:.40}")
        item_size = _size(item)
        if size is not None and item_size != size:
            raise PromptError(f"context items disagree on the image size: {size} and {item_size}")
        size = item_size
        height, width = size
        x, y = _number(value.get("x"), "value.x") * width / 100, _number(value.get("y"), "value.y") * height / 100
        chosen = value.get(kind)
        if isinstance(chosen, list) and chosen and isinstance(chosen[0], str):
            label = chosen[0]
        if kind == "keypointlabels":
            points.append((x, y))
            labels.append(BACKGROUND if item.get("is_positive") is False else FOREGROUND)
        else:
            box = (x, y, x + _number(value.get("width"), "value.width") * width / 100,
                   y + _number(value.get("height"), "value.height") * height / 100)
    prompt = Prompt.from_points(points, labels, box)
    prompt.check_inside(size)
    return ClickRequest(prompt=prompt, label=label, size=size)


def click_prediction(answer: ClickAnswer, brush: BrushConfig, label: str | None, model_version: str) -> dict:
    """One Label Studio prediction holding the clicked region as one brush region.

    The region carries ``label`` when it is one of the brush's labels, else the brush's first
    label (a smart keypoint's labels need not match the brush's). Raises :class:`PromptError`
    when the answer's mask is empty (Label Studio would show nothing).
    """
    if not answer.mask.any():
        raise PromptError("the click selected no pixel: click inside a region, or draw a box around it")
    name = label if label in brush.labels else brush.labels[0]
    single = dataclasses.replace(brush, labels=(name,))
    return predictions_from_segmentation(answer.mask[None], np.array([answer.score]), single, model_version)
