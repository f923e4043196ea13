"""Material masks <-> Label Studio brush results (``"type": "brushlabels"``, ``"format": "rle"``).

Label Studio stores a brush mask as a bit-packed run-length code of the flat, row-major RGBA
image (``label_studio_sdk.converter.brush.encode_rle``, a port of thi.ng's ``rle-pack``):

* header: number of values (32 bits), word size - 1 (5 bits), four run-length field widths - 1
  (4 bits each; always 3, 4, 8, 16);
* one token per run: a repeat flag (1 bit; 0 only for runs of length 1), the index of the length
  field width (2 bits), run length - 1 (3, 4, 8 or 16 bits), the value (8 bits). Runs longer than
  2**16 are split into 2**16-long chunks plus the rest, all with the 16-bit field;
* zero padding to the next byte, always at least one bit (a whole zero byte when aligned).

:func:`mask_to_rle` writes exactly the integers that ``mask2rle(mask.astype(np.uint8) * 255)``
returns, with numpy instead of a Python string per run.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
from label_studio_sdk.converter.brush import decode_rle

from samiam.booster.prototypes import Prototypes
from samiam.errors import AnnotationError
from samiam.labelstudio.config import BrushConfig
from samiam.masks import area_weighted_mean
from samiam.settings import ImageSettings, NamingSettings

BRUSH_VALUE = 255
"""Mask value written to all four RGBA channels: alpha 255 so the region is visible in the editor."""

_WORD_BITS = 8
_LENGTH_FIELD_BITS = (3, 4, 8, 16)
_LONGEST_CHUNK = 2 ** _LENGTH_FIELD_BITS[-1]
_HEADER_BITS = 32 + 5 + 4 * len(_LENGTH_FIELD_BITS)


def _header() -> int:
    """Header fields after the value count (word size, field widths): 21 bits."""
    code = _WORD_BITS - 1
    for width in _LENGTH_FIELD_BITS:
        code = (code << 4) | (width - 1)
    return code


def _runs(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal values in a 1-D array: ``(R,) int64`` lengths and ``(R,) uint8`` values."""
    ends = np.append(np.flatnonzero(values[1:] != values[:-1]), values.size - 1)
    return np.diff(ends, prepend=-1), values[ends]


def _split_long_runs(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split runs longer than 2**16 into 2**16-long chunks followed by the rest.

    Returns the chunks' lengths and values, and whether each chunk comes from a run longer than
    256 (those chunks all use the 16-bit length field).
    """
    wide = lengths > 2 ** _LENGTH_FIELD_BITS[2]
    chunks = np.where(lengths > _LONGEST_CHUNK, -(-lengths // _LONGEST_CHUNK), 1)
    if (chunks == 1).all():
        return lengths, values, wide
    run = np.repeat(np.arange(lengths.size), chunks)
    chunk_index = np.arange(run.size) - (np.cumsum(chunks) - chunks)[run]
    is_last = chunk_index == chunks[run] - 1
    chunk_lengths = np.where(is_last, lengths[run] - chunk_index * _LONGEST_CHUNK, _LONGEST_CHUNK)
    return chunk_lengths, values[run], wide[run]


def _tokens(lengths: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode runs as tokens: ``(T,) uint64`` codes (right-aligned) and ``(T,) int64`` bit counts."""
    lengths, values, wide = _split_long_runs(lengths, values)
    # Length field: 3 bits up to 8, 4 up to 16, 8 up to 256, else 16 (every chunk of a wide run).
    field = np.searchsorted(np.array([8, 16, 256]), lengths, side="left")
    field[wide] = len(_LENGTH_FIELD_BITS) - 1
    width = np.asarray(_LENGTH_FIELD_BITS, np.uint64)[field]
    code = ((lengths > 1).astype(np.uint64) << np.uint64(2)) | field.astype(np.uint64)
    code = (code << width) | (lengths - 1).astype(np.uint64)
    code = (code << np.uint64(_WORD_BITS)) | values.astype(np.uint64)
    return code, (1 + 2 + _WORD_BITS + width).astype(np.int64)


def _pack(codes: np.ndarray, bits: np.ndarray, start: int, total_bytes: int) -> np.ndarray:
    """Write right-aligned ``codes`` of ``bits`` bits each (each <= 27) one after another from
    bit ``start`` of a zeroed ``(total_bytes,) uint8`` buffer."""
    offsets = np.cumsum(bits) - bits + start
    # Left-align each token in a 64-bit window starting at its first byte; a token spans at most
    # 5 bytes (27 bits + 7 bits of offset). Tokens own disjoint bits, so adding bytes ORs them.
    shift = (64 - bits - offsets % 8).astype(np.uint64)
    windows = (codes << shift).astype(">u8").view(np.uint8).reshape(-1, 8)[:, :5]
    positions = offsets[:, None] // 8 + np.arange(5)
    packed = np.bincount(positions.ravel(), weights=windows.ravel(), minlength=total_bytes + 5)
    return packed[:total_bytes].astype(np.uint8)


def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of one mask: ``(H, W) bool -> list[int]`` (bytes 0..255).

    Equal to ``label_studio_sdk.converter.brush.mask2rle(mask.astype(np.uint8) * 255)`` (each
    pixel repeated over the four RGBA channels with value 255 where the mask is set).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D array; got shape {mask.shape}")
    lengths, values = _runs(mask.ravel())
    codes, bits = _tokens(lengths * 4, values.astype(np.uint8) * BRUSH_VALUE)
    total_bytes = (_HEADER_BITS + int(bits.sum())) // 8 + 1
    packed = _pack(codes, bits, _HEADER_BITS, total_bytes)
    header = ((mask.size * 4) << (64 - 32)) | (_header() << (64 - _HEADER_BITS))
    packed[:8] |= np.frombuffer(header.to_bytes(8, "big"), np.uint8)  # >= 67 bits in all
    return packed.tolist()


def _short_id() -> str:
    return uuid.uuid4().hex[:10]


def region_labels(names: Sequence[str | None], labels: Sequence[str]) -> list[tuple[str, bool]]:
    """The label of each of K regions, and whether it was recognised.

    names: K learned names (:attr:`samiam.pipeline.Segmentation.names`), None where the engine
    found no confident name; labels: the config's labels in order. A region keeps its name when
    it is a config label not taken by an earlier region; every other region gets the config's next
    label that no recognised region carries, in config order, and is marked not recognised. With
    no names at all this is config order (the zero-shot placeholders).
    """
    if len(names) > len(labels):
        raise ValueError(f"{len(names)} regions but the label config has only {len(labels)} labels "
                         f"({', '.join(labels)}); bound merging.max_materials by the label count")
    kept = [name if name in labels else None for name in names]
    kept = [name if name is not None and name not in kept[:i] else None for i, name in enumerate(kept)]
    spare = iter(label for label in labels if label not in kept)
    return [(name, True) if name is not None else (next(spare), False) for name in kept]


def predictions_from_segmentation(materials: np.ndarray, scores: np.ndarray, config: BrushConfig,
                                  model_version: str, names: Sequence[str | None] | None = None,
                                  unnamed_score: float = NamingSettings.unnamed_score) -> dict:
    """One Label Studio prediction with one brush region per material.

    materials: (K, H, W) bool, one mask per material, largest first (as the engine orders them);
    scores: (K,) float in [0, 1]; names: K label names learned from the project's annotations
    (None entries: not recognised), or None when the project has none yet. Labels follow
    :func:`region_labels`: without names material k gets ``config.labels[k]``, a placeholder
    that annotators relabel; a region whose name was not recognised scores at most
    ``unnamed_score``. K must not exceed the number of labels (the service bounds K with
    ``MergingSettings.max_materials``; see :meth:`model.SamiamModel.settings_for`).

    Returns ``{"result": [...], "score": area-weighted mean score, "model_version": ...}``.
    """
    materials = np.asarray(materials, bool)
    scores = np.asarray(scores, np.float64)
    if materials.ndim != 3 or len(scores) != len(materials) or (names is not None and len(names) != len(scores)):
        raise ValueError(f"need (K, H, W) materials, (K,) scores and K names; got {materials.shape}, "
                         f"{scores.shape} and {None if names is None else len(names)} names")
    k, height, width = materials.shape
    labelled = region_labels([None] * k if names is None else names, config.labels)
    if names is not None:
        scores = np.array([score if known else min(score, unnamed_score)
                           for score, (_, known) in zip(scores, labelled)])
    result = [{
        "id": _short_id(),
        "from_name": config.from_name,
        "to_name": config.to_name,
        "type": "brushlabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {"format": "rle", "rle": mask_to_rle(mask), "brushlabels": [label]},
        "score": float(score),
    } for mask, score, (label, _) in zip(materials, scores, labelled)]
    return {"result": result, "score": area_weighted_mean(materials, scores), "model_version": model_version}


def versioned(model_version: str, prototypes: Prototypes | None) -> str:
    """``model_version`` of predictions made with ``prototypes``: ``samiam-v1+p1a2b3c4d`` (the
    prototypes' content hash), so it changes whenever a project's prototypes do; unchanged when
    nothing is learned yet."""
    return f"{model_version}+p{prototypes.version}" if prototypes is not None and prototypes.labels else model_version


def _brush_mask(result: dict, height: int, width: int) -> np.ndarray:
    """Decode one brush result's RLE (label-studio-sdk's ``decode_rle``) to ``(H, W) bool``
    after checking that its header announces exactly ``H * W * 4`` values."""
    rle = result["value"].get("rle")
    if not isinstance(rle, list) or len(rle) < 5 or not all(type(b) is int and 0 <= b <= 255 for b in rle):
        raise AnnotationError(f"brush result {result.get('id')!r}: rle must be a list of bytes (0..255)")
    announced = int.from_bytes(bytes(rle[:4]), "big")
    if announced != height * width * 4:
        raise AnnotationError(f"brush result {result.get('id')!r}: its RLE holds {announced} values, not "
                              f"{height} x {width} x 4")
    try:
        flat = decode_rle(rle)
    except (IndexError, ValueError) as error:  # the bit stream ends early or runs over
        raise AnnotationError(f"brush result {result.get('id')!r}: corrupt RLE ({error})") from None
    return flat.reshape(height, width, 4)[:, :, 3] > 0


def materials_from_results(results: list[dict], config: BrushConfig | None = None,
                           max_pixels: int = ImageSettings.max_pixels) -> tuple[np.ndarray, list[str]]:
    """Decode brush results back to masks: ``(K, H, W) bool`` and each region's first label.

    Items that are not brush results in RLE format (or, given ``config``, not from its
    ``<BrushLabels>``) are skipped. Raises :class:`AnnotationError` when brush items disagree
    on the image size, announce more than ``max_pixels`` pixels, hold bad RLE or have no label,
    and, given ``config``, when a label is not one of ``config.labels``.
    """
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise AnnotationError("an annotation's result must be a list of objects")
    brushes = [r for r in results if str(r.get("type", "")).lower() == "brushlabels"
               and isinstance(r.get("value"), dict) and r["value"].get("format") == "rle"
               and (config is None or r.get("from_name") == config.from_name)]
    if not brushes:
        return np.zeros((0, 0, 0), bool), []
    sizes = {(r.get("original_height"), r.get("original_width")) for r in brushes}
    if len(sizes) > 1:
        raise AnnotationError(f"brush results disagree on the image size: {sorted(sizes, key=str)}")
    (height, width), = sizes
    if not (type(height) is int and type(width) is int and height > 0 and width > 0
            and height * width <= max_pixels):
        raise AnnotationError(f"brush results give an image size of {height!r} x {width!r}; need positive "
                              f"integers of at most {max_pixels} pixels")
    labels = []
    for r in brushes:
        label = r["value"].get("brushlabels")
        if not isinstance(label, list) or not label or not isinstance(label[0], str):
            raise AnnotationError(f"brush result {r.get('id')!r} has no label (value.brushlabels)")
        if config is not None and label[0] not in config.labels:
            raise AnnotationError(f"brush result {r.get('id')!r} has label {label[0]!r}, not one of the "
                                  f"config's {', '.join(config.labels)}")
        labels.append(label[0])
    return np.stack([_brush_mask(r, height, width) for r in brushes]), labels


def annotation_materials(results: list[dict], config: BrushConfig | None = None,
                         shape: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """One mask per label of an annotation: ``(L, H, W) bool`` and the L labels (in config order
    given ``config``, else in order of first appearance); regions of one label are merged.

    ``shape``: the annotated image's ``(H, W)``, when known; brush results of another size raise
    :class:`AnnotationError` (as do the checks of :func:`materials_from_results`).
    """
    masks, labels = materials_from_results(results, config)
    if shape is not None and not len(masks):
        masks = np.zeros((0, *shape), bool)
    if shape is not None and masks.shape[1:] != tuple(shape):
        raise AnnotationError(f"brush results are {masks.shape[2]} x {masks.shape[1]} px but the image "
                              f"is {shape[1]} x {shape[0]} px")
    order = [label for label in (config.labels if config else dict.fromkeys(labels)) if label in labels]
    merged = [masks[[label == name for label in labels]].any(axis=0) for name in order]
    return (np.stack(merged) if merged else np.zeros((0, *masks.shape[1:]), bool)), tuple(order)
