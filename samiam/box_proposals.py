"""SAM-like proposals of a real particle micrograph, made from the particles' drawn boxes.

SAM's automatic mask generator gives one mask per visible particle, a mask of the support the
particles sit on (particles included) and one of the vacuum. Without a SAM checkpoint, this module
makes such a set from an image and its drawn boxes (``shared/data/particles``), so that the
booster can be judged on real pixels (issue #16, section 2):

* **polarity**: particles are bright (HAADF) when the boxes' centres are brighter than their
  edges (median over boxes), else dark (bright field);
* **particle masks**: one per box, the pixels of the box on the particle's side of the box's own
  Otsu threshold, largest connected component, holes filled;
* **support and vacuum**: the image smoothed by a Gaussian of :data:`SUPPORT_SMOOTHING` of its
  side, split at its Otsu threshold; the side of the particles' polarity is the support (particles
  included), the other the vacuum, when it is one (:data:`VACUUM_CONTRAST`); otherwise the
  support is the whole image and there is no vacuum mask.

The ground truth is drawn from the same masks: particles (their union), support without them, and
vacuum without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SUPPORT_SMOOTHING = 0.02
"""Gaussian sigma of the support/vacuum split, as a share of the image's longer side."""
VACUUM_CONTRAST = 0.5
"""The dark side of the split (bright side in bright field) is vacuum when its mean intensity lies
at least this share of the support's mean below it (above, in bright field), measured from the
image's darkest (brightest) percentile; a weaker split divides one support and gives no vacuum."""
MIN_PARTICLE_PIXELS = 4
"""Boxes whose particle mask has fewer pixels are skipped (a box of a few pixels has no outline)."""


@dataclass(frozen=True)
class BoxProposals:
    """Proposals and their ground truth for one image.

    proposals: (N, H, W) bool, the particle masks first (one per usable box), then the support
        (particles included) and the vacuum (when there is one).
    n_particles: how many of ``proposals`` are particle masks.
    truth: (G, H, W) bool, pairwise disjoint: particles, support, then vacuum (when there is one).
    bright: True when particles are brighter than their surroundings (HAADF).
    """

    proposals: np.ndarray
    n_particles: int
    truth: np.ndarray
    bright: bool

    @property
    def particle_truth(self) -> np.ndarray:
        """(H, W) bool, the union of the particle masks (``truth[0]``)."""
        return self.truth[0]


def box_proposals(grey: np.ndarray, boxes: np.ndarray) -> BoxProposals:
    """SAM-like proposals of ``grey: (H, W) float`` whose particles lie in ``boxes: (B, 4)``
    (x0, y0, x1, y1 in px, as :func:`samiam.particle_metrics.yolo_boxes` gives them); see the
    module docstring. Raises ValueError when no box gives a particle mask."""
    grey = np.asarray(grey, np.float64)
    clipped = pixel_boxes(boxes, grey.shape)
    bright = particles_are_bright(grey, clipped)
    oriented = grey if bright else -grey
    particles = [mask for mask in (particle_mask(oriented, box) for box in clipped)
                 if mask.sum() >= MIN_PARTICLE_PIXELS]
    if not particles:
        raise ValueError("no box gave a particle mask")
    particles = np.stack(particles)
    union = particles.any(axis=0)
    support = _support(oriented, union) | union
    vacuum = ~support
    proposals = np.concatenate([particles, support[None]] + ([vacuum[None]] if vacuum.any() else []))
    truth = np.stack([union, support & ~union] + ([vacuum] if vacuum.any() else []))
    return BoxProposals(proposals=proposals, n_particles=len(particles), truth=truth, bright=bright)


def particles_are_bright(grey: np.ndarray, pixel_boxes: np.ndarray) -> bool:
    """True when, over ``pixel_boxes: (B, 4) int`` (x0, y0, x1, y1), the median of (mean of a
    box's central half - mean of its outer edge pixels) is positive."""
    differences = []
    for x0, y0, x1, y1 in pixel_boxes:
        patch = grey[y0:y1, x0:x1]
        h, w = patch.shape
        if h < 4 or w < 4:
            continue
        centre = patch[h // 4:h - h // 4, w // 4:w - w // 4]
        edge = np.concatenate([patch[0], patch[-1], patch[1:-1, 0], patch[1:-1, -1]])
        differences.append(centre.mean() - edge.mean())
    return bool(np.median(differences) > 0) if differences else True


def pixel_boxes(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``boxes: (B, 4)`` float (x0, y0, x1, y1) -> (B', 4) int64 clipped to the image, empty ones dropped."""
    h, w = shape
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, x1 = np.clip(np.floor(b[:, 0]), 0, w), np.clip(np.ceil(b[:, 2]), 0, w)
    y0, y1 = np.clip(np.floor(b[:, 1]), 0, h), np.clip(np.ceil(b[:, 3]), 0, h)
    out = np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def particle_mask(oriented: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(H, W) bool: the part of ``box`` (x0, y0, x1, y1) above its Otsu threshold of
    ``oriented`` (particles bright), largest component, holes filled."""
    from skimage.filters import threshold_otsu

    x0, y0, x1, y1 = box
    mask = np.zeros(oriented.shape, bool)
    patch = oriented[y0:y1, x0:x1]
    if patch.min() == patch.max():
        return mask
    above = patch > threshold_otsu(patch)
    labels, count = ndimage.label(above)
    if count == 0:
        return mask
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    mask[y0:y1, x0:x1] = ndimage.binary_fill_holes(labels == largest)
    return mask


def _support(oriented: np.ndarray, particles: np.ndarray) -> np.ndarray:
    """(H, W) bool: the support side of the Otsu split of ``oriented`` (particles, and so the
    support against vacuum, bright) smoothed without the ``particles: (H, W) bool`` (normalised
    convolution), or everything when the other side is no vacuum (:data:`VACUUM_CONTRAST`, measured
    from the first percentile of the pixels outside the particles)."""
    from skimage.filters import threshold_otsu

    sigma = SUPPORT_SMOOTHING * max(oriented.shape)
    outside = (~particles).astype(np.float64)
    smooth = ndimage.gaussian_filter(oriented * outside, sigma) / np.maximum(ndimage.gaussian_filter(outside, sigma), 1e-9)
    support = smooth > threshold_otsu(smooth)
    floor = np.percentile(oriented[~particles], 1)
    dark, light = smooth[~support].mean() - floor, smooth[support].mean() - floor
    if (~support).any() and dark <= (1 - VACUUM_CONTRAST) * light:
        return support
    return np.ones(oriented.shape, bool)
