"""The two files ``samiam import`` writes per image: a browser view and the full-range data.

* ``NAME.png``: (H, W) uint8 grey, the micrograph's intensity with
  :attr:`~samiam.settings.ImageSettings.stretch_percentiles` (0.5 and 99.5 % by default) mapped
  to 0 and 255 and clipped: what a browser (Label Studio) shows and annotators draw on;
* ``NAME.tif``: (H, W) float32, the full-range intensity, unclipped and unquantised: the stored
  values for a grey image, the linear map of the colour mean that the engine uses (0 and 1 at
  the stretch percentiles) for a colour one; with the pixel size and unit as ImageJ
  calibration. The backend segments this file (same H, W as the PNG, so masks match it pixel
  for pixel), and samiam reads it back with the same calibration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from samiam.calibration import imagej_unit
from samiam.io import Micrograph
from samiam.outputs import write_png


@dataclass(frozen=True)
class ViewFiles:
    png: Path
    """The 8-bit view."""
    original: Path
    """The full-range float32 TIFF."""


def full_range(micrograph: Micrograph) -> np.ndarray:
    """(H, W) float32: the stored values of a grey micrograph, its engine intensity if colour."""
    if micrograph.raw.ndim == 2:
        return micrograph.raw.astype(np.float32)
    return micrograph.grey


def write_views(out_dir: Path, micrograph: Micrograph) -> ViewFiles:
    """Write ``NAME.png`` and ``NAME.tif`` (see the module docstring) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ViewFiles(out_dir / f"{micrograph.name}.png", out_dir / f"{micrograph.name}.tif")
    write_png(files.png, micrograph.rgb[..., 0])
    calibration = {}
    if micrograph.pixel_size is not None:
        per_unit = 1 / micrograph.pixel_size
        calibration = {"resolution": (per_unit, per_unit), "metadata": {"unit": imagej_unit(micrograph.pixel_unit)}}
    tifffile.imwrite(files.original, full_range(micrograph), imagej=True, **calibration)
    return files
