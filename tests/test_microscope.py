"""Microscope files (DM3/DM4, Velox EMD, TIA, MRC) on the real fixtures of shared/data/formats,
TIFF calibration, and the named errors for files samiam cannot take an image from."""

from __future__ import annotations

import io
import json
import shutil
import sys

import numpy as np
import pytest
import tifffile
from shared_data import formats_dir, velox_files

from samiam.calibration import Calibration, imagej_unit, normalise_unit
from samiam.cli import main
from samiam.errors import ConstantImageError, FormatSupportMissingError, ImageError, NoImageSignalError
from samiam.io import iter_micrographs, load_micrograph
from samiam.microscope import read_planes, without_covered_ser

pytest.importorskip("rsciio", reason="RosettaSciIO (pip install 'samiam[formats]') reads microscope files")


def test_dm3_image_with_its_pixel_size():
    micrograph = load_micrograph(formats_dir() / "test_STEM_image.dm3")
    assert micrograph.raw.shape == (68, 68) and micrograph.raw.dtype == np.uint32
    assert micrograph.pixel_size == pytest.approx(0.24854, rel=1e-4) and micrograph.pixel_unit == "nm"
    assert micrograph.signal == "test_STEM_image" and micrograph.name == "test_STEM_image"
    assert micrograph.source == str(formats_dir() / "test_STEM_image.dm3")


def test_dm4_without_calibration_has_no_pixel_size():
    micrograph = load_micrograph(formats_dir() / "test-1.dm4")
    assert micrograph.raw.shape == (2, 2) and micrograph.raw.dtype == np.int16
    assert (micrograph.pixel_size, micrograph.pixel_unit) == (None, None)


def test_tia_emi_and_ser_give_the_same_image():
    emi = load_micrograph(formats_dir() / "128x128-TEM_search.emi")
    ser = load_micrograph(formats_dir() / "128x128-TEM_search_1.ser")
    assert emi.raw.shape == (128, 128) and emi.raw.dtype == np.int32
    np.testing.assert_array_equal(emi.raw, ser.raw)
    assert emi.pixel_size == pytest.approx(5.26121, rel=1e-5) and emi.pixel_unit == "nm"


def test_bright_field_is_what_the_file_records(tmp_path):
    """TIA's and Velox's conventional TEM images on a Ceta camera are bright field; Velox's HAADF
    of a STEM spectrum image and a DigitalMicrograph STEM image are not (nor said to be)."""
    assert load_micrograph(formats_dir() / "128x128-TEM_search.emi").bright_field
    assert all(m.bright_field for m in iter_micrographs(formats_dir() / "fei_example_tem_stack.emd"))
    assert not any(load_micrograph(path).bright_field for path in velox_files(tmp_path))
    assert not load_micrograph(formats_dir() / "test_STEM_image.dm3").bright_field


def test_folder_listing_reads_a_ser_through_its_emi(tmp_path):
    paths = [tmp_path / name for name in ("a.emi", "a_1.ser", "a_2.ser", "b_1.ser", "c.dm3")]
    assert without_covered_ser(paths) == [tmp_path / "a.emi", tmp_path / "b_1.ser", tmp_path / "c.dm3"]


def test_velox_takes_haadf_before_eds_maps_and_never_a_spectrum(tmp_path):
    for path in velox_files(tmp_path):
        micrograph = load_micrograph(path)
        assert micrograph.signal == "HAADF"
        assert micrograph.raw.shape == (16, 16) and micrograph.raw.dtype == np.uint16  # maps are float32
        assert micrograph.pixel_size == pytest.approx(3.59925, rel=1e-5) and micrograph.pixel_unit == "nm"


def test_emd_stack_gives_each_frame_or_their_sum():
    path = formats_dir() / "fei_example_tem_stack.emd"
    frames = list(iter_micrographs(path))
    assert [m.name for m in frames] == ["fei_example_tem_stack.frame000", "fei_example_tem_stack.frame001"]
    assert [m.signal for m in frames] == ["Ceta, frame 1 of 2", "Ceta, frame 2 of 2"]
    assert all(m.raw.shape == (3, 3) and m.raw.dtype == np.int16 for m in frames)
    assert not np.array_equal(frames[0].raw, frames[1].raw)
    assert frames[0].pixel_size == pytest.approx(8.17288, rel=1e-5) and frames[0].pixel_unit == "pm"
    [summed] = iter_micrographs(path, stack="sum")
    assert summed.name == "fei_example_tem_stack" and summed.signal == "Ceta, sum of 2 frames"
    np.testing.assert_array_equal(summed.raw, frames[0].raw.astype(np.float64) + frames[1].raw)


def test_mrc_movie_frames_and_uncalibrated_axes():
    planes = list(read_planes(formats_dir() / "20241021_00405_movie.mrc"))
    assert len(planes) == 32
    for index, plane in enumerate(planes):
        assert plane.pixels.shape == (4, 8) and plane.pixels.dtype == np.uint16
        np.testing.assert_array_equal(plane.pixels, index)  # this fixture's frame k holds the value k
        assert plane.frame == index and plane.calibration == Calibration()  # MRC scale -1: not calibrated


def test_constant_frame_is_a_named_error_naming_the_frame():
    with pytest.raises(ConstantImageError, match=r"movie\.mrc \(image, frame 1 of 32\)"):
        next(iter_micrographs(formats_dir() / "20241021_00405_movie.mrc"))


def test_file_with_only_a_spectrum_has_no_image_signal(tmp_path):
    from rsciio.emd import file_writer

    file_writer(str(tmp_path / "spectrum.emd"), {
        "data": np.arange(100, dtype=np.float32), "original_metadata": {},
        "axes": [{"name": "Energy", "size": 100, "scale": 0.01, "offset": 0, "units": "keV", "navigate": False}],
        "metadata": {"General": {"title": "spectrum"}, "Signal": {"signal_type": "EDS_TEM"}}})
    with pytest.raises(NoImageSignalError, match=r"no 2-D image signal .*spectrum \(100,\)"):
        load_micrograph(tmp_path / "spectrum.emd")


@pytest.mark.parametrize("name", ["test_STEM_image.dm3", "fei_example_tem_stack.emd"])
def test_truncated_or_fake_microscope_files_are_image_errors(tmp_path, name):
    truncated = tmp_path / name
    truncated.write_bytes((formats_dir() / name).read_bytes()[:200])
    with pytest.raises(ImageError, match=name):
        list(iter_micrographs(truncated))
    fake = tmp_path / f"text{truncated.suffix}"
    fake.write_text("not a micrograph")
    with pytest.raises(ImageError, match=fake.name):
        list(iter_micrographs(fake))


def test_missing_rosettasciio_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rsciio.digitalmicrograph", None)  # makes the import fail
    with pytest.raises(FormatSupportMissingError, match=r"pip install 'samiam\[formats\]'"):
        load_micrograph(formats_dir() / "test_STEM_image.dm3")


def tiff_bytes(image: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, image, **kwargs)
    return buffer.getvalue()


IMAGE = np.arange(64, dtype=np.float32).reshape(8, 8)


@pytest.mark.parametrize("unit, expected", [("nm", "nm"), ("micron", "µm"), (imagej_unit("µm"), "µm"),
                                            (imagej_unit("Å"), "Å")])
def test_tiff_imagej_calibration(unit, expected):
    data = tiff_bytes(IMAGE, imagej=True, resolution=(4.0, 4.0), metadata={"unit": unit})
    micrograph = load_micrograph(data)
    assert micrograph.pixel_size == pytest.approx(0.25) and micrograph.pixel_unit == expected


def test_tiff_centimetre_resolution_is_given_in_micrometres():
    data = tiff_bytes(IMAGE, resolution=(20000.0, 20000.0), resolutionunit=tifffile.RESUNIT.CENTIMETER)
    micrograph = load_micrograph(data)
    assert micrograph.pixel_size == pytest.approx(0.5) and micrograph.pixel_unit == "µm"


@pytest.mark.parametrize("kwargs", [{"resolution": (72.0, 72.0), "resolutionunit": tifffile.RESUNIT.INCH}, {}])
def test_tiff_print_resolution_or_none_is_not_a_calibration(kwargs):
    micrograph = load_micrograph(tiff_bytes(IMAGE, **kwargs))
    assert (micrograph.pixel_size, micrograph.pixel_unit) == (None, None)


@pytest.mark.parametrize("unit, expected", [("pixel", None), ("", None), (None, None), ("um", "µm"),
                                            ("\\u00B5m", "µm"), ("1/nm", "1/nm")])
def test_unit_spellings(unit, expected):
    assert normalise_unit(unit) == expected


def test_segment_reads_every_fixture_format(tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(formats_dir(), folder)
    velox_files(folder)
    out = tmp_path / "out"
    # The MRC's frames are constant; the 2x2 DM4 and the 3x3 frames of the EMD stack are read
    # (test_dm4_without_calibration_has_no_pixel_size, test_emd_stack_gives_each_frame_or_their_sum) but too small to segment.
    assert main(["segment", str(folder), "--out", str(out), "--proposer", "classical"]) == 1
    expected = {  # NAME.json -> (pixel size, unit, signal)
        "test_STEM_image": (0.24854, "nm", "test_STEM_image"),
        "128x128-TEM_search": (5.26121, "nm", "image"),
        "Test SI 16x16 215 kx": (3.59925, "nm", "HAADF"),
        "Test SI 16x16 ReducedData 215 kx": (3.59925, "nm", "HAADF"),
    }
    assert sorted(p.name[:-5] for p in out.glob("*.json")) == sorted(expected)
    for name, (size, unit, signal) in expected.items():
        image = json.loads((out / f"{name}.json").read_text())["image"]
        assert image["pixel_size"] == (pytest.approx(size, rel=1e-4) if size else None)
        assert (image["pixel_unit"], image["signal"]) == (unit, signal)
        assert image["source"].startswith(str(folder))
        assert (out / f"{name}.labels.png").is_file()
    output = capsys.readouterr()
    assert "segmented 4 of 7 images" in output.out, output.out  # files: the .ser is read through the .emi
    assert "every pixel has the value 0" in output.out + output.err
    assert "test-1.dm4 (test): the image is 2x2 px; samiam segments images of at least 16 px" in output.out + output.err
    assert "(Ceta, frame 1 of 2): the image is 3x3 px" in output.out + output.err
