"""Pixel size and unit: what one image pixel measures, as a microscope file or TIFF states it.

A :class:`Calibration` travels with each :class:`~samiam.io.Micrograph` into ``NAME.json`` and
Label Studio task data. Units are written the way microscopists write them (``nm``, ``pm``,
``µm``, ``Å``); a file that states no usable calibration gives ``Calibration()`` (both None),
never a made-up 1 px.

TIFF calibration is read from, in this order:

1. ImageJ metadata (``unit=nm`` in the ImageDescription) with ``XResolution`` (pixels per unit);
2. ``ResolutionUnit`` centimetre with ``XResolution`` (pixels per cm), given in µm;

``ResolutionUnit`` inch is ignored: image editors write 72 or 300 dpi there, a print size, not
a measurement of the specimen.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass

import tifffile

UNIT_SPELLINGS = {
    "um": "µm", "micron": "µm", "microns": "µm", "μm": "µm", "µm": "µm",
    "a": "Å", "å": "Å", "angstrom": "Å", "ångström": "Å",
}
"""Other spellings of a unit (lower case) -> the one samiam writes."""

NO_UNIT = {"", "pixel", "pixels", "px", "<undefined>", "none"}
"""Units that mean "not calibrated" (lower case)."""

MICROMETRES_PER_CM = 1e4


@dataclass(frozen=True)
class Calibration:
    """Size of one pixel along x (the image's columns) and its unit; both None when unknown."""

    pixel_size: float | None = None
    pixel_unit: str | None = None


def calibration(scale: float | None, unit: str | None) -> Calibration:
    """A :class:`Calibration` from a pixel size and unit as a file states them.

    Returns ``Calibration()`` when the size is missing, not finite or not positive (MRC writes
    -1 for "not calibrated") or the unit is missing or means pixels.
    """
    unit = normalise_unit(unit)
    if scale is None or unit is None or not math.isfinite(scale) or scale <= 0:
        return Calibration()
    return Calibration(float(scale), unit)


def normalise_unit(unit: str | None) -> str | None:
    """``"micron"``, ``"um"``, ``"\\u00B5m"`` (ImageJ's escape) -> ``"µm"``; no unit -> None."""
    if unit is None:
        return None
    text = str(unit).strip()
    if "\\u" in text:
        text = codecs.decode(text, "unicode_escape")
    if text.lower() in NO_UNIT:
        return None
    return UNIT_SPELLINGS.get(text.lower(), text)


def imagej_unit(unit: str) -> str:
    """``unit`` as an ASCII ImageJ ``unit=`` value (``"µm"`` -> ``"\\u00b5m"``), which ImageJ reads back."""
    return "".join(char if char.isascii() else f"\\u{ord(char):04x}" for char in unit)


def tiff_calibration(tif: tifffile.TiffFile) -> Calibration:
    """The calibration of ``tif``'s first page (see the module docstring for the rules)."""
    page = tif.pages.first
    resolution = page.tags.get("XResolution")
    if resolution is None:
        return Calibration()
    numerator, denominator = resolution.value
    if not numerator or not denominator:
        return Calibration()
    pixels_per_unit = numerator / denominator
    imagej = tif.imagej_metadata or {}
    if "unit" in imagej:
        return calibration(1 / pixels_per_unit, imagej["unit"])
    if page.resolutionunit == tifffile.RESUNIT.CENTIMETER:
        return calibration(MICROMETRES_PER_CM / pixels_per_unit, "µm")
    return Calibration()
