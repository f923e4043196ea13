"""Read microscope files through RosettaSciIO: Gatan DigitalMicrograph ``.dm3``/``.dm4``,
Thermo Fisher Velox ``.emd``, FEI TIA ``.ser``/``.emi`` and ``.mrc``.

RosettaSciIO (GPL-3.0-or-later) is an optional extra, ``pip install 'samiam[formats]'``; it is
imported only when such a file is read, and its absence is a
:class:`~samiam.errors.FormatSupportMissingError` saying so.

Which signal is *the image*
---------------------------
A file may hold several signals (a Velox EMD: HAADF and DF images, EDS element maps, spectra,
a spectrum image). samiam takes one:

* only *image signals* qualify: two signal axes and at most one navigation axis (a stack),
  and not of an EDS/EELS signal type. Spectra (one signal axis), spectrum images (a spectral
  signal axis) and 4-D STEM data (two navigation axes) never do;
* among those, detector images first, in the order HAADF, other dark field (ADF, DF), bright
  field (BF, ABF), then images of unknown origin (a camera's name, no title), and EDS element
  maps (titled by an element symbol, e.g. ``Cu``) last; ties keep the file's order;
* a file without an image signal is a :class:`~samiam.errors.NoImageSignalError`.

The image is *bright field* (:attr:`ImagePlane.bright_field`: vacuum and holes bright, thick or
heavy matter dark, the reverse of Z-contrast) when its title says so (``BF``, ``ABF``) or the file
records a conventional TEM image: TIA's acquisition mode ``TEM ...`` (not ``STEM ...``), Velox's
TEM operating sub-mode ``BrightField``. Other files (DigitalMicrograph's, MRC) do not say it here.

Stacks (a navigation axis of more than one frame: a movie, a drift series) give one image per
frame (``stack="frames"``, named ``NAME.frame000``...) or the sum of all frames
(``stack="sum"``, float64). The pixel size and unit come from the x signal axis.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samiam.calibration import Calibration, calibration
from samiam.errors import (
    FormatSupportMissingError,
    ImageError,
    ImageNotFoundError,
    NoImageSignalError,
    UnsupportedImageError,
)

log = logging.getLogger(__name__)

READERS = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd",
           ".ser": "tia", ".emi": "tia", ".mrc": "mrc"}
"""File suffix -> RosettaSciIO plugin (``rsciio.<plugin>.file_reader``)."""

STACK_MODES = ("frames", "sum")

DETECTOR_ORDER = (r"^HAADF", r"^(ADF|DF)", r"^(BF|ABF)")
"""Title patterns (case-insensitive) of detector images, best first: HAADF, dark field, bright field."""

ELEMENTS = frozenset("""H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga
Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb
Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es
Fm Md No Lr""".split())  # noqa: SIM905 - a table, easier read as text
"""Element symbols: an image titled ``Cu`` or ``Cu_K`` / ``Cu Ka`` is an EDS element map."""

SPECTRAL_SIGNAL_TYPES = ("EDS", "EELS", "CL", "PL", "SPECTRUM")
"""Signal types (prefixes, case-insensitive) that are spectra, never images."""

EXTRA = "pip install 'samiam[formats]'"


@dataclass(frozen=True)
class ImagePlane:
    """One 2-D image taken from a microscope file.

    pixels: (H, W) as stored (integer or float; float64 for a summed stack).
    signal: which signal and frame was taken, e.g. ``"HAADF"``, ``"Ceta, frame 2 of 2"``,
        ``"sum of 32 frames"``.
    frame: the frame index for ``stack="frames"`` of a stack, else None.
    bright_field: the file states a bright-field image (module docstring); False when it does not say.
    """

    pixels: np.ndarray
    signal: str
    frame: int | None
    calibration: Calibration
    bright_field: bool = False


def is_microscope_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in READERS


def without_covered_ser(paths: list[Path]) -> list[Path]:
    """Drop the ``NAME_1.ser``... of every ``NAME.emi`` in ``paths``: reading the ``.emi`` reads them."""
    emi_stems = {p.with_suffix("") for p in paths if p.suffix.lower() == ".emi"}
    return [p for p in paths
            if p.suffix.lower() != ".ser" or p.parent / re.sub(r"_\d+$", "", p.stem) not in emi_stems]


def read_planes(path: Path, stack: str = "frames", max_pixels: int | None = None) -> Iterator[ImagePlane]:
    """The image of a microscope file as 2-D planes: one, or one per frame of a stack.

    Raises :class:`FormatSupportMissingError` (RosettaSciIO or one of its optional readers
    missing), :class:`ImageError` (unreadable, corrupt), :class:`NoImageSignalError` (no image
    signal), :class:`UnsupportedImageError` (a frame of more than ``max_pixels`` pixels or of a
    complex type). Frames are decoded one at a time, as they are consumed.
    """
    if stack not in STACK_MODES:
        raise ValueError(f"stack must be one of {STACK_MODES}, got {stack!r}")
    signals = _read_signals(Path(path))
    chosen = _choose_image(signals, path)
    data, title, calib = chosen["data"], _title(chosen) or "image", _axes_calibration(chosen)
    bright = _bright_field(chosen)
    height, width = data.shape[-2:]
    if max_pixels is not None and height * width > max_pixels:
        raise UnsupportedImageError(f"{path}: {width}x{height} = {height * width} pixels is more than the "
                                    f"limit of {max_pixels} (setting image.max_pixels)")
    if np.dtype(data.dtype).kind not in "iuf":
        raise UnsupportedImageError(f"{path}: the {title} image has samples of type {data.dtype}; samiam "
                                    f"reads integer or real (float) images")
    frames = data.shape[0] if data.ndim == 3 else 1
    if data.ndim == 2 or frames == 1:
        yield ImagePlane(_compute(data.reshape(height, width), path), title, None, calib, bright)
    elif stack == "sum":
        yield ImagePlane(_compute(data.sum(axis=0, dtype=np.float64), path),
                         f"{title}, sum of {frames} frames", None, calib, bright)
    else:
        for index in range(frames):
            yield ImagePlane(_compute(data[index], path), f"{title}, frame {index + 1} of {frames}", index,
                             calib, bright)


def _read_signals(path: Path) -> list[dict[str, Any]]:
    """RosettaSciIO's signal dicts of ``path`` (lazy: dask arrays, nothing decoded yet)."""
    plugin = READERS.get(path.suffix.lower())
    if plugin is None:
        raise UnsupportedImageError(f"{path}: not a microscope file ({', '.join(sorted(READERS))})")
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: no such file")
    try:
        reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    except ImportError as error:
        raise FormatSupportMissingError(f"{path}: reading {path.suffix} files needs RosettaSciIO, which is "
                                        f"not installed ({error}); {EXTRA}") from None
    options = {"select_type": "images"} if plugin == "emd" else {}  # Velox: skip the spectrum image
    try:
        return reader(str(path), lazy=True, **options)
    except ImportError as error:
        raise FormatSupportMissingError(f"{path}: RosettaSciIO needs a library that is not installed to read "
                                        f"this file ({error}); {EXTRA}") from None
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - readers raise many types for corrupt files
        raise ImageError(f"{path}: cannot read the {path.suffix} file, it may be truncated or corrupt "
                         f"({type(error).__name__}: {error})") from None


def _choose_image(signals: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """The best image signal (see the module docstring)."""
    images = [signal for signal in signals if _is_image(signal)]
    if not images:
        found = ", ".join(f"{_title(s) or 'untitled'} {tuple(s['data'].shape)}" for s in signals) or "nothing"
        raise NoImageSignalError(f"{path}: no 2-D image signal in the file (found {found}); samiam segments "
                                 f"images, not spectra or spectrum images")
    ranked = sorted(images, key=_rank)
    if len(ranked) > 1:
        log.info("%s: took %r of the image signals %s", path, _title(ranked[0]), [_title(s) for s in images])
    return ranked[0]


def _is_image(signal: dict[str, Any]) -> bool:
    axes = signal.get("axes") or []
    signal_axes = [axis for axis in axes if not axis.get("navigate")]
    navigation = len(axes) - len(signal_axes)
    signal_type = str(signal.get("metadata", {}).get("Signal", {}).get("signal_type") or "").upper()
    spectral = any(signal_type.startswith(kind) for kind in SPECTRAL_SIGNAL_TYPES)
    return len(signal_axes) == 2 and navigation <= 1 and signal["data"].ndim == len(axes) and not spectral


def _rank(signal: dict[str, Any]) -> int:
    """0, 1, 2: HAADF, dark field, bright field; 3: unknown; 4: an EDS element map."""
    title = _title(signal)
    for rank, pattern in enumerate(DETECTOR_ORDER):
        if re.match(pattern, title, re.IGNORECASE):
            return rank
    if re.split(r"[\s_-]", title)[0] in ELEMENTS:
        return len(DETECTOR_ORDER) + 1
    return len(DETECTOR_ORDER)


def _bright_field(signal: dict[str, Any]) -> bool:
    """True when ``signal``'s title or its file's acquisition record says bright field (module docstring)."""
    if re.match(DETECTOR_ORDER[2], _title(signal), re.IGNORECASE):
        return True
    original = signal.get("original_metadata") or {}
    tia_mode = str(original.get("ObjectInfo", {}).get("ExperimentalDescription", {}).get("Mode") or "")
    velox_mode = str(original.get("Optics", {}).get("TemOperatingSubMode") or "")
    return tia_mode.split()[:1] == ["TEM"] or velox_mode == "BrightField"


def _title(signal: dict[str, Any]) -> str:
    return str(signal.get("metadata", {}).get("General", {}).get("title") or "").strip()


def _axes_calibration(signal: dict[str, Any]) -> Calibration:
    """Pixel size and unit of the x signal axis (the last array axis)."""
    signal_axes = [axis for axis in signal["axes"] if not axis.get("navigate")]
    x = signal_axes[-1]
    try:
        scale = float(x.get("scale"))
    except (TypeError, ValueError):
        return Calibration()
    return calibration(scale, x.get("units"))


def _compute(array: Any, path: Path) -> np.ndarray:
    """Decode a lazy (dask) or memory-mapped array into a numpy array of its own."""
    try:
        return np.array(array.compute() if hasattr(array, "compute") else array)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated data surfaces only when decoded
        raise ImageError(f"{path}: cannot decode the image data, the file may be truncated "
                         f"({type(error).__name__}: {error})") from None
