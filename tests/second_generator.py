"""A second scene generator for tests, deliberately unlike :mod:`samiam.synth`.

``samiam.synth`` renders projected atom columns of real crystal structures, with its own imaging
model, and the weight-free thresholds were tuned on its scenes. The scenes here are drawn another
way, so that a test on them tells whether the engine sees what a person sees rather than what
one generator draws:

* textures are analytic: a *product of sines* (a square lattice of soft bright cells),
  a *hexagonal* lattice (three plane waves 120 degrees apart) or *amorphous* (smoothed white noise);
* layers are stacked top to bottom, separated by *straight* (possibly tilted) or *wavy*
  (sinusoidal) interfaces;
* the image is blurred by a small probe, given Gaussian noise and stored as 16-bit counts.

A scene is fixed by its name (layout, textures, intensities); the seed of its
``np.random.Generator`` draws the lattice phases, small in-plane rotations, the phase of wavy
interfaces and the noise. Tests use seeds :data:`TEST_SEEDS`; anything tuned on these scenes
must use :data:`TUNING_SEEDS` instead, so that the tests stay a check.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

TEST_SEEDS = (0, 1)
"""Seeds the tests draw their scenes with."""
TUNING_SEEDS = tuple(range(100, 110))
"""Seeds for anything tuned on these scenes (never the test seeds)."""
PROBE_SIGMA = 0.6
"""Gaussian blur of the probe, in px."""
NOISE = 0.04
"""Standard deviation of the additive Gaussian noise, in the 0..1 intensity range."""
ROTATION_JITTER = 4.0
"""Each lattice is rotated by up to this many degrees either way from its nominal angle."""


@dataclass(frozen=True)
class Texture:
    """One material's look. ``kind``: ``sines``, ``hexagonal`` or ``amorphous``; ``period``: the
    lattice period in px (amorphous: the grain's smoothing sigma); ``mean``: its mean intensity
    in 0..1; ``contrast``: peak-to-peak amplitude of the lattice (amorphous: four standard
    deviations); ``angle``: nominal in-plane rotation in degrees."""

    kind: str
    period: float
    mean: float
    contrast: float
    angle: float = 0.0


@dataclass(frozen=True)
class Interface:
    """The border between two layers: at ``position`` (a fraction of the height) on the left
    edge, ``tilt`` px lower on the right edge, plus a sine of ``amplitude`` px and ``waves``
    periods across the width (0: straight)."""

    position: float
    tilt: float = 0.0
    amplitude: float = 0.0
    waves: float = 0.0


@dataclass(frozen=True)
class Layout:
    """``layers``: textures top to bottom; ``interfaces``: one fewer, top to bottom, not crossing."""

    size: int
    layers: tuple[Texture, ...]
    interfaces: tuple[Interface, ...]


@dataclass(frozen=True, eq=False)
class GeneratedScene:
    """image: (H, W) uint16, the recorded counts; labels: (H, W) int64, 1..K, the layer of each
    pixel (top layer 1); name and seed that drew it."""

    image: np.ndarray
    labels: np.ndarray
    name: str
    seed: int

    @property
    def materials(self) -> np.ndarray:
        """(K, H, W) bool, one ground-truth mask per layer, top to bottom."""
        return self.labels[None] == np.arange(1, int(self.labels.max()) + 1)[:, None, None]

    def png(self) -> bytes:
        """The image as the 16-bit PNG file a user would give samiam."""
        buffer = io.BytesIO()
        Image.fromarray(self.image).save(buffer, "PNG")
        return buffer.getvalue()


SCENES: dict[str, Layout] = {
    # Issue #16: the top 30 % a bright fine lattice, the rest a dark coarse one.
    "bright_fine_over_dark_coarse": Layout(384, (
        Texture("sines", 4.0, 0.65, 0.3), Texture("hexagonal", 11.0, 0.3, 0.3, angle=15.0),
    ), (Interface(0.3),)),
    # Issue #16: amorphous mid-grey over a dim lattice of period 7 px over a bright one of period 4 px.
    "three_layers": Layout(512, (
        Texture("amorphous", 3.7, 0.46, 0.22), Texture("sines", 7.0, 0.28, 0.19, angle=33.0),
        Texture("sines", 4.0, 0.81, 0.19, angle=7.0),
    ), (Interface(0.31), Interface(0.51))),
    "hexagonal_over_sines_wavy": Layout(384, (
        Texture("hexagonal", 6.0, 0.6, 0.35), Texture("sines", 9.0, 0.4, 0.35, angle=30.0),
    ), (Interface(0.5, amplitude=12.0, waves=2.0),)),
    "tilted_amorphous_cap": Layout(384, (
        Texture("amorphous", 2.0, 0.35, 0.25), Texture("hexagonal", 5.0, 0.6, 0.35),
        Texture("sines", 10.0, 0.45, 0.4, angle=45.0),
    ), (Interface(0.25, tilt=30.0), Interface(0.6, tilt=-20.0))),
    "four_wavy_layers": Layout(512, (
        Texture("amorphous", 2.0, 0.4, 0.2), Texture("hexagonal", 5.0, 0.7, 0.3),
        Texture("sines", 8.0, 0.45, 0.35, angle=20.0), Texture("hexagonal", 12.0, 0.25, 0.25),
    ), (Interface(0.2, amplitude=8.0, waves=1.5), Interface(0.45, amplitude=10.0, waves=3.0),
        Interface(0.72, tilt=15.0))),
}
"""Every scene by name."""


def generate(name: str, seed: int) -> GeneratedScene:
    """Draw the scene ``name`` of :data:`SCENES` with ``np.random.default_rng(seed)``."""
    layout = SCENES[name]
    rng = np.random.default_rng(seed)
    size = layout.size
    labels = layer_labels(layout, rng)
    clean = np.zeros((size, size))
    for index, texture in enumerate(layout.layers, start=1):
        clean = np.where(labels == index, render(texture, size, rng), clean)
    blurred = ndimage.gaussian_filter(clean, PROBE_SIGMA)
    noisy = np.clip(blurred + rng.normal(0.0, NOISE, blurred.shape), 0.0, 1.0)
    return GeneratedScene(np.round(noisy * 65535).astype(np.uint16), labels, name, seed)


def layer_labels(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """(size, size) int64: 1 above the first interface, 2 below it, ...; wave phases from ``rng``."""
    size = layout.size
    rows = np.arange(size)[:, None]
    cols = np.arange(size)[None, :]
    labels = np.ones((size, size), np.int64)
    for interface in layout.interfaces:
        phase = rng.uniform(0, 2 * np.pi)
        boundary = (interface.position * size + interface.tilt * cols / size
                    + interface.amplitude * np.sin(2 * np.pi * interface.waves * cols / size + phase))
        labels += rows >= boundary
    return labels


def render(texture: Texture, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) float64 intensities of ``texture`` filling the whole field."""
    if texture.kind == "amorphous":
        grain = ndimage.gaussian_filter(rng.normal(size=(size, size)), texture.period)
        return texture.mean + texture.contrast / 4 * grain / grain.std()
    angle = np.deg2rad(texture.angle + rng.uniform(-ROTATION_JITTER, ROTATION_JITTER))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    k = 2 * np.pi / texture.period
    if texture.kind == "sines":
        u = x * np.cos(angle) + y * np.sin(angle) + rng.uniform(0, texture.period)
        v = -x * np.sin(angle) + y * np.cos(angle) + rng.uniform(0, texture.period)
        pattern = (1 + np.sin(k * u)) * (1 + np.sin(k * v)) / 4  # 0..1
    elif texture.kind == "hexagonal":
        # Three waves 120 degrees apart: sum in -1.5..3, bright spots on a triangular lattice.
        wave = sum(np.cos(k * (x * np.cos(angle + a) + y * np.sin(angle + a)) + rng.uniform(0, 2 * np.pi))
                   for a in (0.0, 2 * np.pi / 3, 4 * np.pi / 3))
        pattern = (wave + 1.5) / 4.5
    else:
        raise ValueError(f"unknown texture kind {texture.kind!r}; use sines, hexagonal or amorphous")
    return texture.mean + texture.contrast * (pattern - pattern.mean())
