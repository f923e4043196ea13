"""What each of a project's labels looks like: exemplar texture embeddings learned from annotations.

An annotated image gives material masks with the project's own label names. :func:`update` cuts
up to ``naming.crops_per_label`` crops inside each labelled region (the merging step's crops,
:func:`region_crops`), embeds them with the project's texture embedder and adds them to that
label's exemplars: a uniform reservoir sample, at most ``naming.exemplars_per_label`` of every
crop seen. Exemplars are the embedder's features *standardised per image*
(:func:`image_statistics`: minus each feature's median, divided by its standard deviation, over
crops tiling the whole image), so that dose, blur and the image's intensity stretch, which change
from image to image of one sample, shift the features less; they are rounded to float16 (so that
the JSON form round-trips exactly). Raw features named 60 % of the regions of difficulty-3 series
right after one corrected image in ``bench/naming.py``, standardised ones 92 %.

Distances between crops and exemplars (:meth:`Prototypes.distances`) are Euclidean after scaling
each feature column by its standard deviation over all exemplars and each of the embedder's
blocks by 1/sqrt(its width), as the merging step does within one image; a crop's distance to a
label is its mean distance to the label's :data:`NEIGHBOURS` nearest exemplars. A label's
*spread* (:attr:`Prototypes.spreads`) is the same distance from its own exemplars to the others
(median over them): a distance in units of the spread is about 1 for a crop of that material,
and grows with how different the crop is.

Prototypes are frozen: :func:`update` returns new ones, and :attr:`Prototypes.version` (8 hex
digits of a content hash) changes whenever they do. :meth:`Prototypes.to_json` /
:meth:`Prototypes.from_json` give a compact form (exemplars as base64 float16) for a store.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from samiam import masks as masklib
from samiam.booster.crops import cut_crops, interior_boxes, sample_crops
from samiam.booster.embedders import TextureEmbedder
from samiam.booster.merging import crop_side
from samiam.errors import PrototypeError
from samiam.settings import Settings

NEIGHBOURS = 5
"""A crop's distance to a label is its mean distance to this many nearest exemplars of it."""
JSON_FORMAT = 1
"""Version of the JSON layout written by :meth:`Prototypes.to_json`."""


@dataclass(frozen=True)
class LabelPrototype:
    """One label's exemplars.

    exemplars: (E, D) float32 (float16-exact) image-standardised embeddings,
        E <= ``naming.exemplars_per_label``.
    seen: crops of this label seen in all (the reservoir's stream length).
    images: annotated images that had at least one crop of this label.
    """

    name: str
    exemplars: np.ndarray
    seen: int
    images: int


@dataclass(frozen=True)
class Prototypes:
    """A project's labels as learned so far (module docstring).

    embedder: identity of the texture embedder that made the exemplars (``TextureEmbedder.identity``);
        blocks: its block widths.
    labels: one :class:`LabelPrototype` per learned label, in the order they were learned (or
        the order given to :meth:`restrict`).
    unlearned: labels of the project with no exemplars yet (set by :meth:`restrict`).
    """

    embedder: str
    blocks: tuple[int, ...]
    labels: tuple[LabelPrototype, ...] = ()
    unlearned: tuple[str, ...] = ()

    @classmethod
    def empty(cls, embedder: TextureEmbedder) -> Prototypes:
        """No label learned yet, for exemplars made by ``embedder``."""
        return cls(embedder=embedder.identity, blocks=tuple(int(b) for b in embedder.blocks))

    def made_by(self, embedder: TextureEmbedder) -> bool:
        """Whether these exemplars are ``embedder``'s features (the same identity and blocks)."""
        return embedder.identity == self.embedder and tuple(embedder.blocks) == self.blocks

    def require_embedder(self, embedder: TextureEmbedder) -> None:
        """Raise :class:`PrototypeError` unless these exemplars were made by ``embedder``."""
        if not self.made_by(embedder):
            raise PrototypeError(f"prototypes were made with the {self.embedder!r} embedder, not "
                                 f"{embedder.identity!r} (merging.embedder changed, or its features did in an "
                                 f"upgrade): learn them again from the annotations")

    @property
    def names(self) -> tuple[str, ...]:
        """The learned labels' names."""
        return tuple(label.name for label in self.labels)

    @property
    def complete(self) -> bool:
        """True when at least one label is learned and no label of the project is unlearned."""
        return bool(self.labels) and not self.unlearned

    @cached_property
    def version(self) -> str:
        """8 hex digits of a hash of the embedder and every label's name, counts and exemplars."""
        digest = hashlib.sha256(json.dumps([self.embedder, self.blocks]).encode())
        for label in self.labels:
            digest.update(json.dumps([label.name, label.seen, label.images]).encode())
            digest.update(label.exemplars.astype("<f2").tobytes())
        return digest.hexdigest()[:8]

    @cached_property
    def _column_weights(self) -> np.ndarray:
        """(D,) float64: 1 / (column std over all exemplars * sqrt(its block's width))."""
        pooled = np.concatenate([label.exemplars for label in self.labels]).astype(np.float64)
        spread = pooled.std(axis=0)
        block_width = np.repeat(np.asarray(self.blocks, np.float64), self.blocks)
        return 1.0 / (np.where(spread > 0, spread, 1.0) * np.sqrt(block_width))

    def scaled(self, features: np.ndarray) -> np.ndarray:
        """``features: (M, D)`` (from :func:`embed_regions`) -> ``(M, D) float64`` in the distance space."""
        features = np.asarray(features, np.float64)
        if features.ndim != 2 or features.shape[1] != sum(self.blocks):
            raise PrototypeError(f"features of shape {features.shape} do not fit prototypes of "
                                 f"{sum(self.blocks)} columns (embedder {self.embedder})")
        return features * self._column_weights

    @cached_property
    def spreads(self) -> np.ndarray:
        """(L,) float64: each label's median, over its exemplars, of the mean distance to its
        :data:`NEIGHBOURS` nearest other exemplars (tiny when 0; 1 for a single exemplar)."""
        spreads = []
        for label in self.labels:
            points = self.scaled(label.exemplars)
            if len(points) < 2:
                spreads.append(1.0)
                continue
            pairwise = _euclidean(points, points)
            np.fill_diagonal(pairwise, np.inf)  # sorts last; at most E - 1 neighbours are taken
            spreads.append(float(np.median(_nearest_mean(pairwise, min(NEIGHBOURS, len(points) - 1)))))
        return np.maximum(np.asarray(spreads, np.float64), np.finfo(np.float32).eps)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Distance of each crop to each label: ``features: (M, D)`` -> ``(M, L) float64``, the
        mean distance to the label's :data:`NEIGHBOURS` nearest exemplars (divide by
        :attr:`spreads` for units of each label's spread)."""
        points = self.scaled(features)
        return np.stack([_nearest_mean(_euclidean(points, self.scaled(label.exemplars)), NEIGHBOURS)
                         for label in self.labels], axis=1) if self.labels else np.zeros((len(points), 0))

    def restrict(self, labels: Sequence[str]) -> Prototypes:
        """Only the given labels (a project's label config), in that order; those not learned
        yet become :attr:`unlearned`."""
        learned = {label.name: label for label in self.labels}
        return replace(self, labels=tuple(learned[name] for name in labels if name in learned),
                       unlearned=tuple(name for name in labels if name not in learned))

    def to_json(self) -> str:
        """Compact JSON: exemplars as base64 little-endian float16."""
        return json.dumps({
            "format": JSON_FORMAT, "embedder": self.embedder, "blocks": list(self.blocks),
            "unlearned": list(self.unlearned),
            "labels": [{"name": label.name, "seen": label.seen, "images": label.images,
                        "count": len(label.exemplars),
                        "exemplars": base64.b64encode(label.exemplars.astype("<f2").tobytes()).decode()}
                       for label in self.labels]}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Prototypes:
        """Read :meth:`to_json`'s output; anything else raises :class:`PrototypeError`."""
        try:
            data = json.loads(text)
            if data["format"] != JSON_FORMAT:
                raise ValueError(f"format {data['format']!r}, expected {JSON_FORMAT}")
            blocks = tuple(_positive_int(b) for b in data["blocks"])
            width = sum(blocks)
            labels = []
            for item in data["labels"]:
                raw = np.frombuffer(base64.b64decode(item["exemplars"], validate=True), "<f2")
                exemplars = raw.reshape(_positive_int(item["count"]), width).astype(np.float32)
                if not np.isfinite(exemplars).all():
                    raise ValueError(f"label {item['name']!r} has non-finite exemplars")
                labels.append(LabelPrototype(_text(item["name"]), exemplars, _positive_int(item["seen"]),
                                             _positive_int(item["images"])))
            names = [label.name for label in labels]
            if len(set(names)) != len(names) or not blocks:
                raise ValueError("duplicate label names or no feature blocks")
            return cls(embedder=_text(data["embedder"]), blocks=blocks, labels=tuple(labels),
                       unlearned=tuple(_text(name) for name in data["unlearned"]))
        except (ValueError, TypeError, KeyError, AttributeError) as error:  # json/base64/reshape errors
            raise PrototypeError(f"stored prototypes are unreadable: {error}") from None


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ma, D), (Mb, D) -> (Ma, Mb) Euclidean distances."""
    squared = (a ** 2).sum(axis=1)[:, None] - 2 * a @ b.T + (b ** 2).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(squared, 0))


def _nearest_mean(distances: np.ndarray, k: int) -> np.ndarray:
    """(M, E) distances -> (M,) mean of each row's min(k, E) smallest ones."""
    return np.sort(distances, axis=1)[:, :k].mean(axis=1)


def _positive_int(value: object) -> int:
    if type(value) is not int or value < 1:
        raise ValueError(f"expected a positive integer, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def region_crops(masks: np.ndarray, side: int, per_mask: int, inside: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops of side ``side`` inside each of ``masks: (N, H, W) bool``, as the merging step draws
    them: up to ``per_mask`` grid crops at least ``inside`` in the mask, else (for a mask of at
    least ``(side / 2)^2`` px) one crop centred on its most interior pixel.

    Returns ``boxes: (M, 4) int64`` (y0, x0, y1, x1) and ``owner: (M,) int64`` (mask index).
    """
    sample = sample_crops(masks, side, per_mask, inside, np.random.default_rng(seed))
    fallback = (sample.counts(len(masks)) == 0) & (masklib.areas(masks) >= (side / 2) ** 2)
    boxes = np.concatenate([sample.boxes, interior_boxes(masks[fallback], side)])
    return boxes, np.concatenate([sample.owner, np.flatnonzero(fallback)])


def embed_regions(grey: np.ndarray, masks: np.ndarray, per_mask: int, settings: Settings,
                  embedder: TextureEmbedder) -> tuple[np.ndarray, np.ndarray]:
    """Image-standardised embeddings (:func:`image_statistics`) of :func:`region_crops` of
    ``masks: (N, H, W) bool`` on ``grey: (H, W)``: ``features: (M, D) float32`` and ``owner: (M,) int64``."""
    side = crop_side(settings.merging, *grey.shape)
    boxes, owner = region_crops(masks, side, per_mask, settings.merging.crop_inside, settings.merging.seed)
    if len(boxes) == 0:
        return np.zeros((0, sum(embedder.blocks)), np.float32), owner
    features = np.asarray(embedder.embed(cut_crops(grey, boxes)), np.float64)
    centre, scale = image_statistics(grey, side, embedder)
    return ((features - centre) / scale).astype(np.float32), owner


def image_statistics(grey: np.ndarray, side: int, embedder: TextureEmbedder) -> tuple[np.ndarray, np.ndarray]:
    """Median and standard deviation (1 where 0) of each feature column over a grid of crops of
    side ``side`` tiling ``grey: (H, W)`` (stride ``side``): ``(D,)`` and ``(D,)`` float64."""
    ys = np.arange(0, grey.shape[0] - side + 1, side)
    xs = np.arange(0, grey.shape[1] - side + 1, side)
    y0, x0 = (a.ravel() for a in np.meshgrid(ys, xs, indexing="ij"))
    boxes = np.stack([y0, x0, y0 + side, x0 + side], axis=1)
    features = np.asarray(embedder.embed(cut_crops(grey, boxes)), np.float64)
    spread = features.std(axis=0)
    return np.median(features, axis=0), np.where(spread > 0, spread, 1.0)


def update(prototypes: Prototypes, grey: np.ndarray, masks: np.ndarray, labels: Sequence[str],
           embedder: TextureEmbedder, settings: Settings) -> Prototypes:
    """Learn from one annotated image: new prototypes with the crops of each labelled region added.

    grey: (H, W) float32, the micrograph (``Micrograph.grey``); masks: (L, H, W) bool, one per
    entry of ``labels`` (regions of one label are merged). A label whose region is too small for
    any crop learns nothing from this image. Raises :class:`PrototypeError` when the masks and
    labels disagree or ``embedder`` is not the one that made ``prototypes``.
    """
    prototypes.require_embedder(embedder)
    masks = masklib.as_mask_stack(masks, grey.shape)
    if len(masks) != len(labels) or not all(isinstance(name, str) and name for name in labels):
        raise PrototypeError(f"need one non-empty label name per mask; got {len(masks)} masks and "
                             f"labels {list(labels)!r}")
    names = list(dict.fromkeys(labels))
    merged = np.array([masks[[label == name for label in labels]].any(axis=0) for name in names],
                      bool).reshape(len(names), *grey.shape)
    features, owner = embed_regions(grey, merged, settings.naming.crops_per_label, settings, embedder)
    rng = np.random.default_rng([settings.merging.seed, int(prototypes.version, 16)])
    learned = {label.name: label for label in prototypes.labels}
    for i, name in enumerate(names):
        rows = features[owner == i]
        if len(rows):
            learned[name] = _add(learned.get(name), name, rows, settings.naming.exemplars_per_label, rng)
    return replace(prototypes, labels=tuple(learned.values()),
                   unlearned=tuple(name for name in prototypes.unlearned if name not in learned))


def _add(label: LabelPrototype | None, name: str, rows: np.ndarray, capacity: int,
         rng: np.random.Generator) -> LabelPrototype:
    """Reservoir sampling (algorithm R) of ``rows: (M, D)`` into the label's exemplars."""
    if capacity < 1:
        raise PrototypeError(f"naming.exemplars_per_label must be at least 1; got {capacity}")
    rows = rows.astype(np.float16).astype(np.float32)
    if not np.isfinite(rows).all():
        raise PrototypeError(f"the embedder gave features out of float16 range for label {name!r}")
    exemplars = label.exemplars.copy() if label else np.zeros((0, rows.shape[1]), np.float32)
    seen = label.seen if label else 0
    for row in rows:
        if len(exemplars) < capacity:
            exemplars = np.concatenate([exemplars, row[None]])
        else:
            slot = int(rng.integers(seen + 1))
            if slot < capacity:
                exemplars[slot] = row
        seen += 1
    return LabelPrototype(name, exemplars, seen, (label.images if label else 0) + 1)
