"""The `samiam` command line, run in-process through `samiam.cli.main`."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samiam.cli import main
from samiam.masks import rle_decode
from samiam.synth.dataset import read_ground_truth, read_manifest

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
CLASSICAL = ["--proposer", "classical"]


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


def test_synth_then_segment_proposals_then_evaluate(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", "--out", str(data), "--n", "1", "--seed", "0", "--size", "256",
                 "--difficulty", "1", "--proposals"]) == 0
    (name,) = [entry["name"] for entry in read_manifest(data)]
    materials, _ = read_ground_truth(data, name)
    boosted = tmp_path / "boosted"

    assert main(["segment", str(data / "images"), "--out", str(boosted), "--proposals",
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
