"""Tests of samiam.io: every format, bit depth and channel layout, and every refusal."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

import samiam
from samiam.errors import (
    ConstantImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from samiam.io import Micrograph, check_segmentable, load_micrograph
from samiam.settings import ImageSettings, Settings

H, W = 48, 64
REAL = Path(__file__).resolve().parents[1] / "samples"  # bundled copies of ../shared/data/real


def two_regions(low: float, high: float, dtype, seed: int = 0) -> np.ndarray:
    """(H, W) image: a dim left half around ``low`` and a bright right half around ``high``."""
    rng = np.random.default_rng(seed)
    spread = (high - low) / 10
    image = np.where(np.arange(W) < W // 2, low, high) + rng.normal(0, spread, (H, W))
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        image = np.clip(np.rint(image), info.min, info.max)
    return image.astype(dtype)


def expected_grey(intensity: np.ndarray, percentiles=(0.5, 99.5)) -> np.ndarray:
    """Plain reimplementation of the documented stretch, in float64."""
    intensity = np.asarray(intensity, np.float64)
    low, high = np.percentile(intensity, percentiles)
    return (intensity - low) / (high - low)


def assert_well_formed(micrograph: Micrograph) -> None:
    assert micrograph.shape == (H, W)
    assert micrograph.grey.dtype == np.float32 and micrograph.grey.shape == (H, W)
    assert micrograph.rgb.dtype == np.uint8 and micrograph.rgb.shape == (H, W, 3)
    assert (micrograph.rgb == micrograph.rgb[..., :1]).all()
    expected_rgb = np.rint(np.clip(micrograph.grey, 0, 1) * 255)
    np.testing.assert_array_equal(micrograph.rgb[..., 0], expected_rgb)
    left, right = micrograph.grey[:, : W // 2], micrograph.grey[:, W // 2:]
    assert right.mean() > left.mean() + 0.3, "brightness order between the two halves is lost"


def save_pillow(path: Path, array: np.ndarray, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


# --- formats, bit depths and channel layouts ----------------------------------------------


@pytest.mark.parametrize("dtype, low, high, bits", [
    (np.uint8, 40, 200, 8),
    (np.uint16, 10_000, 60_000, 16),
    (np.int32, -100_000, 3_000_000, 32),
    (np.float32, -1.5, 2.5, 32),
    (np.float64, 1e-3, 5e-3, 64),
])
def test_grey_tiff_any_sample_type(tmp_path, dtype, low, high, bits):
    image = two_regions(low, high, dtype)
    tifffile.imwrite(tmp_path / "sample.tif", image)
    micrograph = load_micrograph(tmp_path / "sample.tif")
    assert micrograph.name == "sample"
    assert micrograph.raw.dtype == dtype and micrograph.bit_depth == bits
    np.testing.assert_array_equal(micrograph.raw, image)
    assert_well_formed(micrograph)
    np.testing.assert_allclose(micrograph.grey, expected_grey(image), atol=1e-5)


@pytest.mark.parametrize("dtype, high, bits", [(np.uint8, 220, 8), (np.uint16, 60_000, 16)])
def test_grey_png_8_and_16_bit(tmp_path, dtype, high, bits):
    image = two_regions(high // 5, high, dtype)
    micrograph = load_micrograph(save_pillow(tmp_path / "g.png", image))
    assert micrograph.raw.dtype == dtype and micrograph.bit_depth == bits
    np.testing.assert_array_equal(micrograph.raw, image)
    assert_well_formed(micrograph)
    np.testing.assert_allclose(micrograph.grey, expected_grey(image), atol=1e-5)


def test_grey_stays_unclipped_and_unquantised(tmp_path):
    image = two_regions(10_000, 40_000, np.uint16)
    grey = load_micrograph(save_pillow(tmp_path / "g.png", image)).grey
    assert grey.min() < 0 and grey.max() > 1
    assert len(np.unique(grey)) > 256


def test_rgb_png_uses_channel_mean(tmp_path):
    grey = two_regions(40, 200, np.float64)
    rgb = np.clip(np.rint(np.stack([grey * 0.8, grey, grey * 1.1], -1)), 0, 255).astype(np.uint8)
    micrograph = load_micrograph(save_pillow(tmp_path / "c.png", rgb))
    assert micrograph.raw.shape == (H, W, 3) and micrograph.bit_depth == 8
    assert_well_formed(micrograph)
    np.testing.assert_allclose(micrograph.grey, expected_grey(rgb.mean(-1)), atol=1e-5)


def test_16_bit_rgb_png_keeps_16_bits_in_rgb_order(tmp_path):
    grey = two_regions(5_000, 50_000, np.float64)
    rgb = np.stack([grey, grey * 0.5, grey * 1.2], -1).astype(np.uint16)
    (tmp_path / "c16.png").write_bytes(cv2.imencode(".png", rgb[..., ::-1])[1].tobytes())
    micrograph = load_micrograph(tmp_path / "c16.png")
    assert micrograph.raw.dtype == np.uint16 and micrograph.bit_depth == 16
    np.testing.assert_array_equal(micrograph.raw, rgb)
    assert_well_formed(micrograph)


def test_alpha_is_dropped(tmp_path):
    grey = two_regions(40, 200, np.uint8)
    alpha = np.random.default_rng(1).integers(0, 256, (H, W), dtype=np.uint8)
    rgb = np.stack([grey, grey // 2, grey], -1)
    reference = load_micrograph(save_pillow(tmp_path / "rgb.png", rgb)).grey
    cases = {
        "rgba.png": lambda p: save_pillow(p, np.dstack([rgb, alpha])),
        "rgba.tif": lambda p: tifffile.imwrite(p, np.dstack([rgb, alpha]), photometric="rgb"),
    }
    for name, write in cases.items():
        write(tmp_path / name)
        micrograph = load_micrograph(tmp_path / name)
        assert micrograph.raw.shape == (H, W, 4), name
        assert_well_formed(micrograph)
        np.testing.assert_array_equal(micrograph.grey, reference, err_msg=name)

    grey_reference = load_micrograph(save_pillow(tmp_path / "g.png", grey)).grey
    save_pillow(tmp_path / "la.png", np.dstack([grey, alpha]), )
    tifffile.imwrite(tmp_path / "la.tif", np.dstack([grey, alpha]), photometric="minisblack",
                     extrasamples=["unassalpha"])
    for name in ("la.png", "la.tif"):
        micrograph = load_micrograph(tmp_path / name)
        assert micrograph.raw.shape == (H, W, 2), name
        np.testing.assert_array_equal(micrograph.grey, grey_reference, err_msg=name)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_jpeg(tmp_path, mode):
    image = two_regions(40, 200, np.uint8)
    if mode == "RGB":
        image = np.stack([image] * 3, -1)
    micrograph = load_micrograph(save_pillow(tmp_path / "j.jpg", image, quality=95))
    assert micrograph.raw.dtype == np.uint8 and micrograph.raw.shape == image.shape
    assert_well_formed(micrograph)


def test_bytes_input_matches_path_input(tmp_path):
    image = two_regions(10_000, 60_000, np.uint16)
    path = save_pillow(tmp_path / "g.png", image)
    from_path, from_bytes = load_micrograph(path), load_micrograph(path.read_bytes())
    assert from_bytes.name == "image" and from_path.name == "g"
    np.testing.assert_array_equal(from_bytes.grey, from_path.grey)
    tifffile.imwrite(tmp_path / "t.tif", image)
    np.testing.assert_array_equal(load_micrograph((tmp_path / "t.tif").read_bytes()).raw, image)


def test_multipage_tiff_uses_first_page_and_says_so(tmp_path, caplog):
    first = two_regions(100, 900, np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([first, first[::-1]]), photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="samiam.io"):
        micrograph = load_micrograph(tmp_path / "stack.tif")
    np.testing.assert_array_equal(micrograph.raw, first)
    assert "2 pages" in caplog.text and "stack.tif" in caplog.text


def test_percentile_settings_are_used(tmp_path):
    image = two_regions(10_000, 60_000, np.uint16)
    path = save_pillow(tmp_path / "g.png", image)
    full = load_micrograph(path, ImageSettings(stretch_percentiles=(0.0, 100.0))).grey
    assert full.min() == 0 and full.max() == 1
    np.testing.assert_allclose(load_micrograph(path, ImageSettings(stretch_percentiles=(5, 95))).grey,
                               expected_grey(image, (5, 95)), atol=1e-5)


def test_nan_and_inf_are_ignored_and_become_zero(tmp_path):
    image = two_regions(-1.0, 3.0, np.float32)
    bad = np.zeros((H, W), bool)
    bad[::7, ::5] = True
    corrupted = image.copy()
    corrupted[bad] = np.where(np.arange(bad.sum()) % 2, np.nan, np.inf)
    tifffile.imwrite(tmp_path / "nan.tif", corrupted)
    grey = load_micrograph(tmp_path / "nan.tif").grey
    assert np.isfinite(grey).all() and (grey[bad] == 0).all()
    low, high = np.percentile(image[~bad].astype(np.float64), (0.5, 99.5))
    np.testing.assert_allclose(grey[~bad], (image[~bad] - low) / (high - low), atol=1e-5)


def test_mostly_constant_image_falls_back_to_min_max(tmp_path):
    image = np.full((H, W), 7, np.uint8)
    image[3, 4] = image[10, 20] = 9
    grey = load_micrograph(save_pillow(tmp_path / "flat.png", image)).grey
    np.testing.assert_array_equal(grey, (image == 9).astype(np.float32))


def test_real_samples_load():
    jpeg = load_micrograph(REAL / "lsfo_lattice_haadf.jpg")
    assert jpeg.shape == (790, 787) and jpeg.bit_depth == 8 and jpeg.rgb.shape == (790, 787, 3)
    tiff = load_micrograph(REAL / "moo3_nanoparticles_16bit.tiff")
    assert tiff.shape == (512, 512) and tiff.bit_depth == 16 and tiff.raw.dtype == np.uint16
    assert tiff.raw.max() > 60_000
    for micrograph in (jpeg, tiff):
        # about 0.5 % of the pixels below 0 and above 1 (fewer where the data saturate)
        assert (micrograph.grey < 0).mean() < 0.006 and (micrograph.grey > 1).mean() < 0.006
        assert 0 < np.median(micrograph.grey) < 1


# --- refusals --------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` 8-bit grey pixels, with almost no data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def test_missing_file(tmp_path):
    with pytest.raises(ImageNotFoundError, match="nothere.png"):
        load_micrograph(tmp_path / "nothere.png")


def test_truncated_png_bytes():
    data = io.BytesIO()
    Image.fromarray(two_regions(40, 200, np.uint8)).save(data, format="PNG")
    with pytest.raises(ImageError, match="truncated"):
        load_micrograph(data.getvalue()[: len(data.getvalue()) // 2])


def test_truncated_tiff(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", two_regions(40, 200, np.uint16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "t.tif").read_bytes()[:100])
    with pytest.raises(ImageError, match="cut.tif"):
        load_micrograph(tmp_path / "cut.tif")


def test_text_file_renamed_png(tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(ImageError, match="notes.png.*not a recognised image"):
        load_micrograph(tmp_path / "notes.png")


def test_empty_file_and_zero_size_image(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnsupportedImageError, match="empty"):
        load_micrograph(tmp_path / "empty.png")
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 9), np.uint8))
    with pytest.raises(UnsupportedImageError, match="zero size"):
        load_micrograph(tmp_path / "zero.tif")


@pytest.mark.parametrize("shape", [(8, 8), (15, 400), (400, 15)])
def test_images_too_small_to_segment_load_but_are_refused_by_name(tmp_path, shape):
    pixels = np.random.default_rng(0).integers(0, 65535, shape, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "tiny.tif", pixels)
    micrograph = load_micrograph(tmp_path / "tiny.tif")  # metadata stays readable
    with pytest.raises(UnsupportedImageError, match=rf"tiny.tif: the image is {shape[1]}x{shape[0]} px; .* at least 16"):
        check_segmentable(micrograph)
    with pytest.raises(UnsupportedImageError, match="at least 16 px a side"):
        samiam.segment(micrograph, Settings().replace({"proposals.proposer": "classical"}))


def test_an_image_of_the_smallest_side_is_segmentable(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (16, 16), dtype=np.uint8)
    check_segmentable(load_micrograph(save_pillow(tmp_path / "small.png", pixels)))


@pytest.mark.parametrize("image", [
    np.full((H, W), 7, np.uint8),
    np.full((H, W), 1234, np.uint16),
    np.full((H, W), np.nan, np.float32),
    np.where(np.arange(W) % 2, np.inf, np.nan).astype(np.float32)[None].repeat(H, 0),
])
def test_constant_images(tmp_path, image):
    tifffile.imwrite(tmp_path / "flat.tif", image)
    with pytest.raises(ConstantImageError, match="flat.tif"):
        load_micrograph(tmp_path / "flat.tif")


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_five_channels(tmp_path, planar):
    image = np.random.default_rng(0).integers(0, 255, (H, W, 5), dtype=np.uint8)
    if planar == "separate":
        image = np.moveaxis(image, -1, 0)
    tifffile.imwrite(tmp_path / "five.tif", image, photometric="minisblack", planarconfig=planar)
    with pytest.raises(UnsupportedImageError, match="5 colour channels"):
        load_micrograph(tmp_path / "five.tif")


def test_too_many_pixels_with_small_limit(tmp_path):
    image = two_regions(40, 200, np.uint8)
    save_pillow(tmp_path / "g.png", image)
    tifffile.imwrite(tmp_path / "g.tif", image)
    small = ImageSettings(max_pixels=H * W - 1)
    for name in ("g.png", "g.tif"):
        with pytest.raises(ImageTooLargeError, match="max_pixels"):
            load_micrograph(tmp_path / name, small)
        assert load_micrograph(tmp_path / name, ImageSettings(max_pixels=H * W)).shape == (H, W)


@pytest.mark.parametrize("side", [9000, 100_000])
def test_png_bomb_header_is_refused_before_decoding(side):
    # 9000^2 is over the default limit (8192^2); 100000^2 also trips Pillow's own bomb guard.
    with pytest.raises(ImageTooLargeError):
        load_micrograph(png_header_only(side, side))


def test_tiff_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(60_000)
        tif.pages[0].tags["ImageLength"].overwrite(60_000)
    with pytest.raises(ImageTooLargeError, match="bomb.tif.*60000x60000"):
        load_micrograph(path)


@pytest.mark.parametrize("dtype", [np.complex64, bool])
def test_unsupported_sample_types(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "odd.tif", (np.arange(H * W).reshape(H, W) % 2).astype(dtype))
    with pytest.raises(UnsupportedImageError, match="not supported"):
        load_micrograph(tmp_path / "odd.tif")


def test_one_bit_png_is_unsupported(tmp_path):
    Image.fromarray(np.arange(H * W).reshape(H, W) % 2 == 0).save(tmp_path / "bw.png")
    with pytest.raises(UnsupportedImageError, match="bw.png"):
        load_micrograph(tmp_path / "bw.png")


def test_tiff_whose_first_page_is_missing_names_the_problem_and_leaks_no_tifffile_warning(tmp_path, caplog):
    # A TIFF header pointing at a first page past the end of the file, as when a download stops early.
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + struct.pack("<I", 4096) + bytes(8))
    with pytest.raises(ImageError) as refused:
        load_micrograph(tmp_path / "cut.tif")
    assert str(refused.value) == (f"{tmp_path / 'cut.tif'}: cannot decode the TIFF file, it may be truncated "
                                  "or corrupt (invalid offset to first page 4096)")
    assert [record for record in caplog.records if record.name == "tifffile"] == []


def test_tiff_with_truncated_pixels_says_so(tmp_path):
    tifffile.imwrite(tmp_path / "t.tif", two_regions(40, 200, np.uint16))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "t.tif").read_bytes()[:2000])
    with pytest.raises(ImageError, match=r"cut.tif: cannot decode the TIFF file, it may be truncated or "
                                         r"corrupt \(.*failed to read"):
        load_micrograph(tmp_path / "cut.tif")


@pytest.mark.parametrize("max_pixels, advice", [
    (None, f"more than the limit of {ImageSettings().max_pixels} (setting image.max_pixels)"),
    (10**12, "limit is 1000000000000 (setting image.max_pixels); save it as TIFF"),
])
def test_png_beyond_pillows_bomb_guard_is_refused_in_terms_of_samiams_limit(max_pixels, advice):
    settings = ImageSettings(max_pixels=max_pixels) if max_pixels else None
    with pytest.raises(ImageTooLargeError) as refused:
        load_micrograph(png_header_only(100_000, 100_000), settings)
    assert str(refused.value).startswith(f"image bytes: the image has more than {2 * Image.MAX_IMAGE_PIXELS} "
                                         "pixels") and advice in str(refused.value)
