"""Decode a micrograph (PNG, JPEG, TIFF, or a microscope file) and normalise it for the engine.

>>> from samiam.io import load_micrograph
>>> micrograph = load_micrograph("haadf.tif")          # doctest: +SKIP
>>> micrograph.grey.dtype, micrograph.rgb.shape[-1]    # doctest: +SKIP
(dtype('float32'), 3)

TIFF files are read with tifffile (any integer or float sample type), everything else with
Pillow; 16-bit colour PNGs, which Pillow reduces to 8 bits, are decoded with OpenCV. The image
size is checked from the file header before any pixel is decoded. Microscope files (``.dm3``,
``.dm4``, ``.emd``, ``.ser``, ``.emi``, ``.mrc``) are read by :mod:`samiam.microscope`, which
says which of their signals is the image and how stacks are handled; :func:`iter_micrographs`
gives every frame of a stack, :func:`load_micrograph` one image (a stack's sum). The pixel size
and unit (:mod:`samiam.calibration`) travel with the micrograph.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from samiam import microscope
from samiam.calibration import Calibration, tiff_calibration
from samiam.errors import (
    ConstantImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from samiam.settings import ImageSettings

log = logging.getLogger(__name__)

ImageSource = str | os.PathLike | bytes
"""A path to an image file, or the file's bytes (the service passes downloaded bytes)."""

BYTES_NAME = "image"
"""Name given to a micrograph decoded from bytes."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES_WITH_CHANNELS = (2, 4, 6)
"""PNG colour types RGB, grey + alpha and RGBA (IHDR byte 25); Pillow keeps only 8 bits of these."""
_TIFF_ALPHA = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
_MAX_COLOUR_CHANNELS = 3
_MAX_SAMPLE_BITS = 64
_TIFFFILE_OBJECT = re.compile(r"^<tifffile\.[^>]*> ")
"""The ``<tifffile.TiffPages @524296> `` that starts tifffile's log messages."""


@dataclass(frozen=True)
class Micrograph:
    """One decoded image and the normalised copies the engine uses.

    name: file stem, or ``"image"`` for bytes.
    raw: (H, W) or (H, W, C), the decoded pixels as stored, original dtype (alpha included).
    grey: (H, W) float32, the image's intensity (mean of the colour channels) mapped linearly so
        that :attr:`ImageSettings.stretch_percentiles` go to 0 and 1; not clipped, not quantised,
        one mapping for the whole image so that brightness differences between materials survive.
        NaN and infinite pixels are 0.
    rgb: (H, W, 3) uint8, ``grey`` clipped to [0, 1] and scaled to 0..255 in all three channels
        (the input SAM expects).
    bit_depth: bits of the stored sample type (8, 16, 32 or 64).
    pixel_size, pixel_unit: what one pixel measures along x, as the file states it (None: not
        calibrated).
    source: the file it was read from, or ``"image bytes"``.
    signal: which signal (and frame) of a microscope file this is, e.g. ``"HAADF"`` or
        ``"Ceta, frame 2 of 2"``; None for plain image files.
    bright_field: the microscope file states a bright-field image (vacuum bright, matter dark;
        :mod:`samiam.microscope`); False when it does not say (plain image files).
    """

    name: str
    raw: np.ndarray
    grey: np.ndarray
    rgb: np.ndarray
    bit_depth: int
    pixel_size: float | None = None
    pixel_unit: str | None = None
    source: str = ""
    signal: str | None = None
    bright_field: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) in pixels."""
        return self.grey.shape


MIN_SIDE = 16
"""Smallest image side (px) samiam segments: below it an image holds too few texture crops to
find a material (an 8 x 8 image came back with no region at all). Such images still load, for
reading a file's metadata; :func:`check_segmentable` refuses them before segmenting."""


def check_segmentable(micrograph: Micrograph) -> None:
    """Raise :class:`UnsupportedImageError`, naming the image, when a side of ``micrograph`` is
    under :data:`MIN_SIDE` px."""
    height, width = micrograph.shape
    if min(height, width) < MIN_SIDE:
        where = micrograph.source or micrograph.name
        label = f"{where} ({micrograph.signal})" if micrograph.signal else where
        raise UnsupportedImageError(f"{label}: the image is {width}x{height} px; samiam segments images of at "
                                    f"least {MIN_SIDE} px a side")


def load_micrograph(source: ImageSource, settings: ImageSettings | None = None) -> Micrograph:
    """Decode ``source`` (a path or the file's bytes) and normalise it; a microscope file's
    stack becomes the sum of its frames (use :func:`iter_micrographs` for each frame).

    Raises an :class:`~samiam.errors.ImageError` subclass naming the file and the problem:
    :class:`ImageNotFoundError` (no such file), :class:`ImageError` (corrupt, truncated or not
    an image), :class:`ImageTooLargeError` (more than ``settings.max_pixels`` pixels),
    :class:`UnsupportedImageError` (zero size, more than 3 colour channels, complex / boolean /
    wider than 64-bit samples) or :class:`ConstantImageError` (no contrast).
    Microscope files add the errors of :func:`samiam.microscope.read_planes`.
    ``settings`` defaults to :class:`ImageSettings`'s defaults.
    """
    return next(iter_micrographs(source, settings, stack="sum"))


def iter_micrographs(source: ImageSource, settings: ImageSettings | None = None,
                     stack: str = "frames") -> Iterator[Micrograph]:
    """The micrographs in ``source``: one, or for a microscope file's stack with
    ``stack="frames"`` one per frame (named ``NAME.frame000``, ...), decoded as consumed.

    ``stack="sum"`` sums a stack's frames. Errors as :func:`load_micrograph`.
    """
    settings = settings or ImageSettings()
    if not isinstance(source, (bytes, bytearray, memoryview)) and microscope.is_microscope_file(source):
        path = Path(source)
        for plane in microscope.read_planes(path, stack, settings.max_pixels):
            name = path.stem if plane.frame is None else f"{path.stem}.frame{plane.frame:03d}"
            yield _normalise(name, f"{path} ({plane.signal})", plane.pixels, plane.pixels, settings,
                             plane.calibration, source=str(path), signal=plane.signal,
                             bright_field=plane.bright_field)
        return
    name, label, data = _read_source(source)
    if not data:
        raise UnsupportedImageError(f"{label}: the file is empty (0 bytes)")
    if data[:4] in _TIFF_MAGIC:
        raw, colour, calib = _decode_tiff(data, label, settings.max_pixels)
    else:
        (raw, colour), calib = _decode_pillow(data, label, settings.max_pixels), Calibration()
    yield _normalise(name, label, raw, colour, settings, calib, source=label)


def _normalise(name: str, label: str, raw: np.ndarray, colour: np.ndarray, settings: ImageSettings,
               calib: Calibration, source: str, signal: str | None = None,
               bright_field: bool = False) -> Micrograph:
    """Decoded pixels -> :class:`Micrograph`; ``colour`` is ``raw`` without alpha, ``label``
    names the image in error messages."""
    grey = _stretch(_intensity(colour, label), settings.stretch_percentiles, label)
    return Micrograph(name=name, raw=raw, grey=grey, rgb=_as_rgb8(grey),
                      bit_depth=raw.dtype.itemsize * 8, pixel_size=calib.pixel_size,
                      pixel_unit=calib.pixel_unit, source=source, signal=signal, bright_field=bright_field)


def _read_source(source: ImageSource) -> tuple[str, str, bytes]:
    """-> (micrograph name, label for messages, file bytes)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return BYTES_NAME, "image bytes", bytes(source)
    path = Path(source)
    try:
        return path.stem, str(path), path.read_bytes()
    except FileNotFoundError:
        raise ImageNotFoundError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read the file ({error.strerror or error})") from None


def _check_size(label: str, height: int, width: int, max_pixels: int) -> None:
    """Refuse, from the header, images with zero size or more than ``max_pixels`` pixels."""
    if height * width == 0:
        raise UnsupportedImageError(f"{label}: the image has zero size ({width}x{height})")
    if height * width > max_pixels:
        raise ImageTooLargeError(
            f"{label}: {width}x{height} = {height * width} pixels is more than the limit of "
            f"{max_pixels} (setting image.max_pixels)")


class _TifffileMessages(logging.Filter):
    """Takes the messages that tifffile logs while this thread decodes, so that they go into the
    named error (or are logged under the image's name) instead of leaking out as raw tifffile
    warnings. tifffile's logger is process-wide: other threads' records pass untouched."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []
        logging.getLogger("tifffile").addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        self.messages.append(_TIFFFILE_OBJECT.sub("", record.getMessage()))
        return False

    def remove(self) -> None:
        logging.getLogger("tifffile").removeFilter(self)

    def reasons(self, error: Exception) -> str:
        """What went wrong, for an error message: tifffile's messages, else the exception."""
        return "; ".join(self.messages) or str(error) or type(error).__name__


def _decode_tiff(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray, Calibration]:
    """First page of a TIFF -> (raw, colour, calibration): the samples as stored, (H, W) or
    (H, W, S) with the sample axis last, a view of them without alpha samples, and the pixel size
    from the resolution tags or ImageJ metadata."""
    tifffile_messages = _TifffileMessages()
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            if len(tif.pages) > 1:
                log.warning("%s: TIFF has %d pages; using the first", label, len(tif.pages))
            _check_sample_type(label, page.dtype)
            height, width = page.imagelength, page.imagewidth
            _check_size(label, height, width, max_pixels)
            if page.imagedepth > 1:
                raise UnsupportedImageError(f"{label}: volumetric TIFF pages (depth {page.imagedepth}) "
                                            "are not supported; save one 2-D image per file")
            pixels = page.asarray()
            axes = page.axes
            extrasamples = tuple(page.extrasamples)
            calib = tiff_calibration(tif)
    except (ImageError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - tifffile raises many types for corrupt files
        raise ImageError(f"{label}: cannot decode the TIFF file, it may be truncated or corrupt "
                         f"({tifffile_messages.reasons(error)})") from None
    finally:
        tifffile_messages.remove()
    for message in tifffile_messages.messages:
        log.warning("%s: %s", label, message)
    if axes.startswith("S"):
        pixels = np.moveaxis(pixels, 0, -1)
    alpha = [i for i, kind in enumerate(extrasamples) if kind in _TIFF_ALPHA]
    if pixels.ndim != 3 or not alpha:
        return pixels, pixels, calib
    first_extra = pixels.shape[-1] - len(extrasamples)
    keep = [i for i in range(pixels.shape[-1]) if i - first_extra not in alpha]
    return pixels, pixels[..., keep], calib


def _decode_pillow(data: bytes, label: str, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """PNG, JPEG or another Pillow format -> (raw, colour): (H, W) or (H, W, C) pixels (palette
    and CMYK-like modes converted to RGB), and a view of them without alpha."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            _check_size(label, height, width, max_pixels)
            if _is_16bit_colour_png(data):
                return _decode_opencv(data, label)
            image.load()
            mode = image.mode
            if mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGB")
            elif mode in ("PA", "La", "RGBa"):
                image = image.convert({"PA": "RGBA", "La": "LA", "RGBa": "RGBA"}[mode])
            pixels = np.asarray(image)
            has_alpha = "A" in image.getbands()
    except Image.DecompressionBombError:
        raise ImageTooLargeError(_beyond_pillow_limit(label, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a recognised image file (PNG, JPEG or TIFF expected)") from None
    except (ImageError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for corrupt files
        raise ImageError(f"{label}: cannot decode the image, it may be truncated or corrupt ({error})") from None
    return pixels, pixels[..., :-1] if has_alpha else pixels


def _beyond_pillow_limit(label: str, max_pixels: int) -> str:
    """The message for an image that Pillow refuses to open as a decompression bomb (more than
    twice ``Image.MAX_IMAGE_PIXELS`` pixels), in terms of samiam's own limit."""
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
    if max_pixels < pillow_limit:
        return (f"{label}: the image has more than {pillow_limit} pixels, more than the limit of "
                f"{max_pixels} (setting image.max_pixels)")
    return (f"{label}: the image has more than {pillow_limit} pixels, more than Pillow decodes (PNG, JPEG) "
            f"although the limit is {max_pixels} (setting image.max_pixels); save it as TIFF")


def _is_16bit_colour_png(data: bytes) -> bool:
    """True for a PNG whose IHDR says 16 bits per sample and colour or alpha channels."""
    return (data.startswith(_PNG_MAGIC) and len(data) > 25 and data[24] == 16
            and data[25] in _PNG_COLOUR_TYPES_WITH_CHANNELS)


def _decode_opencv(data: bytes, label: str) -> tuple[np.ndarray, np.ndarray]:
    """16-bit colour PNG -> (raw, colour): (H, W, 3 or 4) uint16 RGB(A) and its RGB view.

    OpenCV decodes grey + alpha as BGRA, so raw has 4 channels for those too.
    """
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageError(f"{label}: cannot decode the 16-bit PNG, it may be truncated or corrupt")
    if pixels.shape[-1] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
        return pixels, pixels[..., :3]
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels, pixels


def _check_sample_type(label: str, dtype: np.dtype) -> None:
    if dtype.kind not in "iuf" or dtype.itemsize * 8 > _MAX_SAMPLE_BITS:
        raise UnsupportedImageError(
            f"{label}: samples of type {dtype} are not supported; use integer or real (float) "
            f"samples of at most {_MAX_SAMPLE_BITS} bits")


def _intensity(colour: np.ndarray, label: str) -> np.ndarray:
    """(H, W) or (H, W, C) pixels without alpha -> (H, W) float intensity (channel mean).

    Works in float32 for samples float32 can hold exactly (8/16-bit integers, float32) and in
    float64 otherwise.
    """
    _check_sample_type(label, colour.dtype)
    work = np.result_type(colour.dtype, np.float32)
    if colour.ndim == 2:
        return colour.astype(work)
    if colour.ndim != 3:
        raise UnsupportedImageError(f"{label}: pixel array of shape {colour.shape}; samiam reads 2-D grey "
                                    "or colour images")
    if colour.shape[-1] > _MAX_COLOUR_CHANNELS:
        raise UnsupportedImageError(
            f"{label}: {colour.shape[-1]} colour channels (after dropping alpha); samiam reads grey or RGB "
            f"images with at most {_MAX_COLOUR_CHANNELS} channels")
    return colour.mean(axis=-1, dtype=work)


def _as_rgb8(grey: np.ndarray) -> np.ndarray:
    """(H, W) float32 -> (H, W, 3) uint8: ``grey`` clipped to [0, 1], scaled to 0..255, rounded,
    with one float32 temporary."""
    scaled = np.clip(grey, 0, 1)
    scaled *= np.iinfo(np.uint8).max
    np.rint(scaled, out=scaled)
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2)


def _stretch(intensity: np.ndarray, percentiles: tuple[float, float], label: str) -> np.ndarray:
    """Map ``percentiles`` of the finite pixels linearly to 0 and 1: (H, W) float -> (H, W) float32.

    Falls back to the finite minimum and maximum when the percentiles coincide; NaN and
    infinite pixels become 0. ``intensity`` (a fresh array of :func:`_intensity`) is overwritten:
    the mapping runs in place, in its own precision, with no float64 copy of a float32 image.
    """
    finite = np.isfinite(intensity)
    all_finite = finite.all()
    values = intensity if all_finite else intensity[finite]
    if values.size == 0:
        raise ConstantImageError(f"{label}: every pixel is NaN or infinite; there is nothing to segment")
    low, high = np.percentile(values, percentiles)
    if not high > low:
        low, high = values.min(), values.max()
    if not high > low:
        raise ConstantImageError(f"{label}: every pixel has the value {low}; there is nothing to segment")
    grey = np.subtract(intensity, float(low), out=intensity)
    grey /= float(high) - float(low)
    grey = grey.astype(np.float32, copy=False)
    if not all_finite:
        grey[~finite] = 0
    return grey
