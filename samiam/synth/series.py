"""Series of synthetic micrographs of one sample: what a lab annotates image after image.

Every image of a series shows the same materials, top to bottom, with the same mean signal
levels and pixel size (:class:`samiam.synth.scenes.Stack`); each draws its own layout (layer
thicknesses, interface roughness, gap bands, an optional vacuum), defects and acquisition
conditions (dose, blur, drift), so the images differ as images of one sample from different
places and sessions do.
"""

from __future__ import annotations

import numpy as np

from samiam.synth.scenes import Scene, SceneParams, draw_stack, generate_scene

SERIES_STREAM = 7919
"""Added to the random stream key of a series' stack, so it is not any single scene's stream."""
SCENES_PER_SERIES = 1000
"""Image i of series s is the scene of seed ``s * SCENES_PER_SERIES + i``."""


def generate_series(seed: int, difficulty: int, n: int, size: int = 1024,
                    params: SceneParams | None = None) -> list[Scene]:
    """``n`` (< :data:`SCENES_PER_SERIES`) scenes of one sample, deterministic per
    ``(seed, difficulty, size)``; image i of a longer series is the same image.

    >>> first, second = generate_series(3, 1, 2, size=256)
    >>> first.names == second.names
    True
    """
    if not 1 <= n <= SCENES_PER_SERIES:
        raise ValueError(f"a series holds 1..{SCENES_PER_SERIES} images; got {n}")
    params = params or SceneParams()
    stack = draw_stack(np.random.default_rng((seed, difficulty, size, SERIES_STREAM)), difficulty, params)
    return [generate_scene(seed * SCENES_PER_SERIES + i, difficulty, size, params, stack)
            for i in range(n)]
