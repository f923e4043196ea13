"""The `samiam` command line, run in-process through `samiam.cli.main`."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from samiam.cli import COMMANDS, build_parser, main
from samiam.masks import rle_decode
from samiam.synth.dataset import read_ground_truth, read_manifest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
CLASSICAL = ["--proposer", "classical"]


def write_crop(path: Path, corner: int, side: int = 128) -> None:
    """A ``side`` px square of the 16-bit MoO3 sample, from (corner, corner), as PNG or TIFF by suffix."""
    crop = tifffile.imread(SAMPLES / "moo3_nanoparticles_16bit.tiff")[corner:corner + side, corner:corner + side]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        Image.fromarray(crop).save(path)
    else:
        tifffile.imwrite(path, crop)


def test_segment_a_folder_writes_outputs_and_skips_a_broken_image(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "moo3_nanoparticles_16bit.tiff", images)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"

    code = main(["segment", str(images), "--out", str(out), *CLASSICAL])

    assert code == 1  # one image failed; the run still finished the others
    captured = capsys.readouterr()
    assert "broken.png" in captured.out + captured.err
    labels = np.asarray(Image.open(out / "moo3_nanoparticles_16bit.labels.png"))
    assert labels.shape == (512, 512) and labels.dtype == np.uint16
    document = json.loads((out / "moo3_nanoparticles_16bit.json").read_text())
    assert len(document["materials"]) == labels.max()
    for material in document["materials"]:
        assert np.array_equal(rle_decode(material["segmentation"]), labels == material["id"])
    assert document["proposer"] == "classical"
    assert (out / "moo3_nanoparticles_16bit.overlay.png").exists()
    assert not (out / "broken.labels.png").exists()


def test_synth_then_segment_the_data_set_folder_then_evaluate(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--n", "1", "--seed", "0", "--size", "256",
                 "--difficulty", "1", "--proposals"]) == 0
    (name,) = [entry["name"] for entry in read_manifest(data)]
    materials, _ = read_ground_truth(data, name)
    boosted = tmp_path / "boosted"

    assert main(["segment", str(data), "--out", str(boosted), "--proposals",
                 str(data / "proposals"), "--materials", str(len(materials))]) == 0
    labels = np.asarray(Image.open(boosted / f"{name}.labels.png"))
    assert labels.max() == len(materials)

    report = tmp_path / "report"
    assert main(["evaluate", "--gt", str(data), "--pred", str(data / "proposals"), "--label", "raw",
                 "--pred", str(boosted), "--label", "boosted", "--out", str(report)]) == 0
    with open(report / "summary.csv") as handle:
        rows = {(row["label"], row["difficulty"]): row for row in csv.DictReader(handle)}
    assert float(rows[("boosted", "all")]["iou"]) > float(rows[("raw", "all")]["iou"])


def test_segment_with_missing_proposals_file_reports_the_image(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "moo3_nanoparticles_16bit.tiff", images)
    code = main(["segment", str(images), "--out", str(tmp_path / "out"), "--proposals", str(tmp_path)])
    assert code == 1
    assert "moo3_nanoparticles_16bit.npz does not exist" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["segment", "{tmp}/nothing-here", "--out", "{tmp}/out"], "no images found"),
    (["segment", "{samples}", "--out", "{tmp}/out", "--set", "merging.nope=1"], "unknown setting"),
    (["segment", "{samples}", "--out", "{tmp}/out", "--set", "removal.tiny_child"], "NAME=VALUE"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, argv, message):
    (tmp_path / "nothing-here").mkdir()
    argv = [a.format(tmp=tmp_path, samples=SAMPLES) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_images_sharing_a_stem_get_outputs_of_their_own(tmp_path, capsys):
    images = tmp_path / "images"
    write_crop(images / "x.png", 0)
    write_crop(images / "x.tiff", 200, side=160)
    out = tmp_path / "out"

    assert main(["segment", str(images), "--out", str(out), *CLASSICAL]) == 0

    assert "segmented 2 of 2" in capsys.readouterr().out
    sides = {json.loads((out / f"{name}.json").read_text())["image"]["width"] for name in ("x.png", "x.tiff")}
    assert sides == {128, 160}
    assert np.asarray(Image.open(out / "x.tiff.labels.png")).shape == (160, 160)


def test_two_given_files_with_one_name_are_refused_before_any_work(tmp_path, capsys):
    write_crop(tmp_path / "a" / "x.png", 0)
    write_crop(tmp_path / "b" / "x.png", 0)
    argv = ["segment", str(tmp_path / "a" / "x.png"), str(tmp_path / "b"), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "would both write x.png.*" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_folders_are_searched_recursively_mirrored_and_earlier_outputs_skipped(tmp_path, capsys):
    images = tmp_path / "images"
    write_crop(images / "top.png", 0)
    write_crop(images / "day1" / "grid2" / "deep.tif", 100)
    first = tmp_path / "first"
    assert main(["segment", str(images / "top.png"), "--out", str(first), *CLASSICAL]) == 0
    for written in first.glob("*.png"):  # earlier outputs kept beside the inputs
        shutil.copy(written, images)
    out = tmp_path / "out"
    capsys.readouterr()

    assert main(["segment", str(images), "--out", str(out), *CLASSICAL]) == 0

    assert "segmented 2 of 2" in capsys.readouterr().out
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*.labels.png")) == [
        "day1/grid2/deep.labels.png", "top.labels.png"]


def test_failed_images_are_named_once_and_leave_no_output_folder(tmp_path, capsys, caplog):
    images = tmp_path / "images"
    images.mkdir()
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "cut.tif").write_bytes(b"II*\x00" + (4096).to_bytes(4, "little") + bytes(8))
    out = tmp_path / "out"

    assert main(["segment", str(images), "--out", str(out)]) == 1

    captured = capsys.readouterr()
    for name in ("broken.png", "cut.tif"):
        (line,) = [line for line in captured.out.splitlines() if line.startswith("skipped")
                   and name in line]
        assert line.count(name) == 1, line
    assert "invalid offset to first page 4096" in captured.out
    assert [record for record in caplog.records if record.name == "tifffile"] == []
    assert not out.exists()


@pytest.mark.parametrize("option", ["--materials", "--max-materials"])
def test_counts_below_one_are_refused_by_the_argument_parser(tmp_path, capsys, option):
    with pytest.raises(SystemExit) as exit:
        main(["segment", str(SAMPLES), "--out", str(tmp_path / "out"), option, "0"])
    assert exit.value.code == 2
    assert f"{option}: must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [[], *([module.rstrip("_")] for module in COMMANDS)])
def test_help_is_plain_text_without_docstring_markup(capsys, command):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and not re.search(r":[a-z]+:`", text), text


def test_every_option_has_help():
    def undocumented(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        missing = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    missing += undocumented(sub, f"{prefix} {name}")
            elif action.help is None:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
        return missing

    assert undocumented(build_parser(), "samiam") == []


def test_log_lines_do_not_run_into_the_progress_bar(tmp_path):
    write_crop(tmp_path / "a.png", 0)
    result = subprocess.run(
        [sys.executable, "-m", "samiam.cli", "segment", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
         *CLASSICAL], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr
    log_lines = [line for line in result.stderr.splitlines() if "samiam.pipeline" in line]
    assert log_lines
    for line in log_lines:
        assert line.rsplit("\r", 1)[-1].startswith("INFO samiam.pipeline"), line


def test_segment_report_writes_measurements_figure_and_summary(tmp_path):
    out = tmp_path / "out"

    assert main(["segment", str(SAMPLES / "moo3_nanoparticles_16bit.tiff"), "--out", str(out),
                 "--report", *CLASSICAL]) == 0

    document = json.loads((out / "moo3_nanoparticles_16bit.json").read_text())
    measured = document["measurements"]["materials"]
    assert len(measured) == len(document["materials"])
    assert sum(m["area_fraction"] for m in measured) == pytest.approx(
        (np.asarray(Image.open(out / "moo3_nanoparticles_16bit.labels.png")) > 0).mean(), abs=1e-6)
    assert Image.open(out / "moo3_nanoparticles_16bit.report.png").size[0] > 0
    with open(out / "measurements.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["image"] for row in rows} == {"moo3_nanoparticles_16bit"} and len(rows) == len(measured)
