"""Texture embedders: crops of a micrograph -> feature vectors that the merging step clusters.

Every embedder maps ``crops: (M, S, S) float32`` (cut from ``Micrograph.grey``, globally normalised
to about [0, 1]) to ``(M, D) float32`` and names its feature *blocks* (column counts, summing to
D). The merging step z-scores every column over the image's crops and then scales each block by
1/sqrt(its width), so that every block carries the same total variance whatever its size.

Weight-free embedders (no model file), vectorised over the crop batch:

* ``intensity``: mean, standard deviation and percentiles of the crop's pixels weighted by a
  Hann window (:func:`crop_window`). Because the image is normalised globally, not per crop,
  brightness differences between materials survive. A plain mean over a crop a few lattice
  cells wide varies with where the lattice falls in it (its phase): at 30 px and 3-4 fringes,
  3-5 % of the mean on the synthetic perovskites, as much as two near-identical materials
  differ; the window lets the cells at the edges fade in, which cuts that to about 1 %.
* ``lbp``: histograms of rotation-invariant uniform local binary patterns (8 neighbours) at two
  radii, plus the intensity block.
* ``fft``: log power spectrum of the Hann-windowed crop, averaged in log-spaced rings of spatial
  frequency (lattice periods) and in angular sectors, whose profile enters only through the
  magnitudes of its circular harmonics (lattice symmetry, not orientation: a rotated grain of a
  material is the same material), plus intensity.
* ``combined``: intensity + lbp + fft blocks.

``default`` is the one with the best clustering accuracy in ``bench/embedder_choice.py``.

``resnet18`` is the paper's kind of embedder: a torchvision ResNet-18 loaded from a local
checkpoint (``merging.embedder_checkpoint``), 512 features after global average pooling.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from samiam import sam_extra
from samiam.errors import CheckpointError, SettingsError
from samiam.settings import MergingSettings


class TextureEmbedder(Protocol):
    """Maps crops to texture features.

    name: registry name. blocks: column count of each feature block (sums to D).
    identity: the name and the revision of what its features mean: features of two embedders are
    comparable (learned label prototypes, :mod:`samiam.booster.prototypes`) only when their
    identities are equal.
    """

    name: str
    blocks: tuple[int, ...]
    identity: str

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: (M, S, S) float32 -> (M, D) float32."""
        ...


INTENSITY_PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)
"""Percentiles of a crop's pixel values in the intensity block (besides mean and std)."""
LBP_NEIGHBOURS = 8
"""Sampling points on each LBP circle."""
LBP_RADII = (1.0, 3.0)
"""LBP circle radii in px: nearest-neighbour detail and the scale of an atomic column."""
FFT_RING_BINS = 10
"""Log-spaced rings of spatial frequency between 1/S and Nyquist (0.5 cycles/px)."""
FFT_SECTOR_BINS = 12
"""Angular sectors over 180 degrees (a real image's spectrum is point-symmetric); even."""
FFT_FLOOR = 0.01
"""Added to each bin's share of the crop's spectral power before the logarithm: bins holding
less than about 1 % of the power (leakage, noise) all look alike."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_INPUT_SIDE = 224
"""Crops are resized to this side before the ResNet, as the authors did."""
RESNET_BATCH = 64
"""Crops per forward pass of the ResNet (bounds GPU memory)."""


def crop_window(side: int) -> np.ndarray:
    """Weights ``(side, side) float64`` summing to 1: the outer product of a Hann window of
    ``side`` points without its zero ends (``np.hanning(side + 2)[1:-1]``).

    A lattice fringe of period p leaks into a windowed mean as the window's spectrum at 1 / p:
    for a box (the plain mean) that falls as 1 / (side / p), about 10 % of the fringe's amplitude
    at 3 fringes per crop, for the Hann window as (side / p) ** -3, under 1 % from 2.5 fringes.
    """
    taper = np.hanning(side + 2)[1:-1]
    weights = np.outer(taper, taper)
    return weights / weights.sum()


def intensity_features(crops: np.ndarray) -> np.ndarray:
    """(M, S, S) -> (M, 2 + len(INTENSITY_PERCENTILES)): mean, standard deviation and percentiles
    of each crop's pixels weighted by :func:`crop_window` (they vary little with the lattice's
    phase in the crop)."""
    flat = crops.reshape(len(crops), -1)
    weights = crop_window(crops.shape[-1]).ravel()
    mean = flat @ weights
    std = np.sqrt(np.maximum((flat - mean[:, None]) ** 2 @ weights, 0.0))
    return np.column_stack([mean, std, weighted_percentiles(flat, weights, INTENSITY_PERCENTILES)])


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, percentiles: tuple[float, ...]) -> np.ndarray:
    """Percentiles of each row of ``values: (M, N)`` whose entries weigh ``weights: (N,)`` (summing
    to 1): the smallest value whose cumulative weight reaches each percentile -> ``(M, P)``."""
    order = np.argsort(values, axis=1)
    cumulative = weights[order]
    np.cumsum(cumulative, axis=1, out=cumulative)
    picks = np.stack([(cumulative < q / 100).sum(axis=1) for q in percentiles], axis=1)
    at = np.take_along_axis(order, np.minimum(picks, values.shape[1] - 1), axis=1)
    return np.take_along_axis(values, at, axis=1)


def lbp_codes(crops: np.ndarray, radius: float, neighbours: int = LBP_NEIGHBOURS) -> np.ndarray:
    """Rotation-invariant uniform LBP codes, as ``skimage.feature.local_binary_pattern(...,
    method="uniform")``, of the pixels at least ``ceil(radius) + 1`` px from the crop border.

    crops: (M, S, S) float -> (M, S - 2m, S - 2m) int64 in 0..neighbours+1, m = ceil(radius) + 1
    (empty when the crop is too small). Neighbours are bilinearly interpolated; a code is the
    number of neighbours >= the centre when the circular pattern has at most two 0/1
    transitions, else ``neighbours + 1``.
    """
    margin = int(np.ceil(radius)) + 1
    m, s = crops.shape[0], crops.shape[-1]
    inner = max(s - 2 * margin, 0)
    crops = np.asarray(crops, np.float64)
    centre = crops[:, margin:margin + inner, margin:margin + inner]
    angles = 2 * np.pi * np.arange(neighbours) / neighbours
    dys = np.round(-radius * np.sin(angles), 5)
    dxs = np.round(radius * np.cos(angles), 5)
    bits = np.empty((neighbours, m, inner, inner), bool)
    for p, (dy, dx) in enumerate(zip(dys, dxs)):
        fy, fx = np.floor(dy), np.floor(dx)
        wy, wx = dy - fy, dx - fx
        value = np.zeros_like(centre)
        for oy, weight_y in ((0, 1 - wy), (1, wy)):
            for ox, weight_x in ((0, 1 - wx), (1, wx)):
                if weight_y * weight_x == 0:
                    continue
                top, left = margin + int(fy) + oy, margin + int(fx) + ox
                value += weight_y * weight_x * crops[:, top:top + inner, left:left + inner]
        bits[p] = value >= centre
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, bits.sum(axis=0), neighbours + 1).astype(np.int64)


def lbp_features(crops: np.ndarray) -> np.ndarray:
    """(M, S, S) -> (M, len(LBP_RADII) * (LBP_NEIGHBOURS + 2)): normalised LBP code histograms."""
    bins = LBP_NEIGHBOURS + 2
    m = len(crops)
    histograms = []
    for radius in LBP_RADII:
        codes = lbp_codes(crops, radius)
        offsets = (np.arange(m, dtype=np.int64) * bins)[:, None, None]
        counts = np.bincount((codes + offsets).ravel(), minlength=m * bins).reshape(m, bins)
        histograms.append(counts / max(codes[0].size, 1))
    return np.concatenate(histograms, axis=1)


def fft_features(crops: np.ndarray) -> np.ndarray:
    """(M, S, S) -> (M, FFT_RING_BINS + FFT_SECTOR_BINS // 2): rotation-invariant spectrum features.

    The power spectrum of the Hann-windowed, mean-subtracted crop is summed in log-spaced rings
    of spatial frequency (the lattice periods) and in angular sectors over 180 degrees; each bin
    is taken as its share of the crop's power, ``log(share + FFT_FLOOR)`` (so the block describes
    the spectrum's shape; contrast is in the intensity block). The sector profile enters through
    the magnitudes of its circular harmonics 1..FFT_SECTOR_BINS // 2 (the lattice's rotational
    symmetry: harmonic 2 for square, 3 for hexagonal), which do not change when a grain rotates.
    """
    s = crops.shape[-1]
    window = np.outer(np.hanning(s), np.hanning(s))
    centred = crops - crops.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.rfft2(centred * window)) ** 2 / ((window ** 2).sum() or 1.0)
    membership = _spectrum_bins(s)
    sums = power.reshape(len(crops), -1) @ membership
    shares = sums / np.maximum(sums[:, :FFT_RING_BINS].sum(axis=1, keepdims=True), np.finfo(float).tiny)
    log_share = np.log(shares + FFT_FLOOR)
    rings, sectors = log_share[:, :FFT_RING_BINS], log_share[:, FFT_RING_BINS:]
    harmonics = np.abs(np.fft.rfft(sectors, axis=1))[:, 1:] / FFT_SECTOR_BINS
    return np.concatenate([rings, harmonics], axis=1)


def _spectrum_bins(side: int) -> np.ndarray:
    """(side * (side // 2 + 1), rings + sectors) float one-hot membership of each rfft2 frequency."""
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.rfftfreq(side)[None, :]
    radius = np.hypot(fy, fx)
    angle = np.arctan2(fy, fx)  # in [-pi/2, pi/2] on the rfft half-plane
    low, high = 1.0 / side, 0.5
    ring_edges = np.geomspace(low, high, FFT_RING_BINS + 1) if side > 2 else np.array([low, high])
    ring = np.digitize(radius, ring_edges) - 1
    in_band = (radius >= low) & (radius <= high)
    ring = np.where(in_band, np.minimum(ring, FFT_RING_BINS - 1), -1)
    sector = np.minimum(((angle + np.pi / 2) / np.pi * FFT_SECTOR_BINS).astype(int), FFT_SECTOR_BINS - 1)
    sector = np.where(in_band, sector, -1)
    membership = np.zeros((side, side // 2 + 1, FFT_RING_BINS + FFT_SECTOR_BINS))
    rows, cols = np.nonzero(ring >= 0)
    membership[rows, cols, ring[rows, cols]] = 1
    membership[rows, cols, FFT_RING_BINS + sector[rows, cols]] = 1
    return membership.reshape(-1, FFT_RING_BINS + FFT_SECTOR_BINS)


@dataclass(frozen=True)
class FeatureBlock:
    """A named group of hand-made features: ``compute((M, S, S)) -> (M, width)``; ``revision``
    goes up whenever what the features mean changes."""

    name: str
    width: int
    compute: Callable[[np.ndarray], np.ndarray]
    revision: int = 1


INTENSITY = FeatureBlock("intensity", 2 + len(INTENSITY_PERCENTILES), intensity_features, revision=2)
"""Revision 2 (2026-12-01): statistics under the Hann window (:func:`crop_window`)."""
LBP = FeatureBlock("lbp", len(LBP_RADII) * (LBP_NEIGHBOURS + 2), lbp_features)
FFT = FeatureBlock("fft", FFT_RING_BINS + FFT_SECTOR_BINS // 2, fft_features)


class FeatureEmbedder:
    """A weight-free embedder: the concatenation of some :class:`FeatureBlock` s."""

    def __init__(self, name: str, parts: tuple[FeatureBlock, ...]):
        self.name = name
        self.parts = parts
        self.blocks = tuple(part.width for part in parts)
        self.identity = f"{name}:" + ",".join(f"{part.name}@{part.revision}" for part in parts)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: (M, S, S) float -> (M, sum(blocks)) float32."""
        crops = np.asarray(crops, np.float64)
        if len(crops) == 0:
            return np.zeros((0, sum(self.blocks)), np.float32)
        return np.concatenate([part.compute(crops) for part in self.parts], axis=1).astype(np.float32)


class ResNetEmbedder:
    """torchvision ResNet-18 from a local state dict; 512 features after global average pooling.

    Grey crops are replicated to three channels, resized to 224 x 224 (bilinear) and normalised
    with the ImageNet statistics. Runs on CUDA when available. The classifier (``fc.*``) of the
    checkpoint is ignored, so checkpoints fine-tuned for any number of classes load. Without torch
    and torchvision it raises :class:`~samiam.errors.SamSupportMissingError`.
    """

    name = "resnet18"
    identity = "resnet18"
    blocks = (512,)

    def __init__(self, checkpoint: str | None):
        sam_extra.require("the resnet18 embedder", sam_extra.TORCH_MODULES)
        import torch
        import torchvision

        if not checkpoint:
            raise CheckpointError("the resnet18 embedder needs a ResNet-18 state dict: set "
                                  "merging.embedder_checkpoint (SAMIAM_MERGING_EMBEDDER_CHECKPOINT)")
        if not os.path.isfile(checkpoint):
            raise CheckpointError(f"merging.embedder_checkpoint: no such file {checkpoint!r}")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            state = {key.removeprefix("module."): value for key, value in state.items()
                     if not key.removeprefix("module.").startswith("fc.")}
            model = torchvision.models.resnet18(weights=None)
            model.fc = torch.nn.Identity()
            model.load_state_dict(state)
        except (RuntimeError, AttributeError, ValueError, OSError, EOFError, pickle.UnpicklingError) as error:
            raise CheckpointError(f"merging.embedder_checkpoint {checkpoint!r} is not a ResNet-18 state "
                                  f"dict: {str(error).splitlines()[0]}") from None
        self._torch = torch
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.eval().to(self.device)
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: (M, S, S) float -> (M, 512) float32."""
        torch = self._torch
        out = np.zeros((len(crops), self.blocks[0]), np.float32)
        with torch.inference_mode():
            for start in range(0, len(crops), RESNET_BATCH):
                batch = torch.as_tensor(np.asarray(crops[start:start + RESNET_BATCH], np.float32),
                                        device=self.device)[:, None]
                batch = torch.nn.functional.interpolate(
                    batch, size=(RESNET_INPUT_SIDE, RESNET_INPUT_SIDE), mode="bilinear", align_corners=False)
                batch = (batch.expand(-1, 3, -1, -1) - self._mean) / self._std
                out[start:start + len(batch)] = self.model(batch).float().cpu().numpy()
        return out


DEFAULT_EMBEDDER = "lbp"
"""The weight-free embedder chosen by ``bench/quality.py`` (20 synthetic 1024 px images per
class): best mIoU with the silhouette K estimator (76.0 vs 73.9 for ``combined``), K found most
often and best on class 1 with the current estimator (all four within a point there). On crop
clustering with the true K (``bench/embedder_choice.py``) ``combined`` and ``lbp`` are within
noise (0.939 vs 0.933)."""

EMBEDDERS: dict[str, Callable[[MergingSettings], TextureEmbedder]] = {
    "intensity": lambda settings: FeatureEmbedder("intensity", (INTENSITY,)),
    "lbp": lambda settings: FeatureEmbedder("lbp", (LBP, INTENSITY)),
    "fft": lambda settings: FeatureEmbedder("fft", (FFT, INTENSITY)),
    "combined": lambda settings: FeatureEmbedder("combined", (INTENSITY, LBP, FFT)),
    "resnet18": lambda settings: ResNetEmbedder(settings.embedder_checkpoint),
}
"""Embedder factories by name; ``default`` (see :data:`DEFAULT_EMBEDDER`) is resolved by
:func:`make_embedder`."""


def make_embedder(settings: MergingSettings) -> TextureEmbedder:
    """The embedder named by ``settings.embedder`` (``default`` -> :data:`DEFAULT_EMBEDDER`)."""
    name = DEFAULT_EMBEDDER if settings.embedder == "default" else settings.embedder
    if name not in EMBEDDERS:
        raise SettingsError(f"merging.embedder: unknown embedder {settings.embedder!r}; choose one of "
                            f"default, {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name](settings)
