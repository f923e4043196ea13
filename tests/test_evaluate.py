"""``samiam evaluate`` on tiny hand-made data sets; expected CSV values are worked out in comments."""

import argparse
import csv
import json

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle
from PIL import Image

from samiam.commands import evaluate as command
from samiam.errors import MaskSetError, SamiamError
from samiam.evaluate import find_predictions, labelstudio_image_name, read_ground_truth

SIDE = 32
TOP = np.zeros((SIDE, SIDE), bool)
TOP[:16] = True
LEFT = np.zeros((SIDE, SIDE), bool)
LEFT[:, :16] = True


def run_evaluate(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", *map(str, argv)])
    return args.func(args)


def write_dataset(root, images):
    """The synthetic generator's layout: manifest.json + gt/<name>/<k>_<material>.png (0/255)."""
    manifest = []
    for name, difficulty, masks in images:
        (root / "gt" / name).mkdir(parents=True)
        for k, (material, mask) in enumerate(masks.items()):
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "gt" / name / f"{k}_{material}.png")
        manifest.append({"name": name, "difficulty": difficulty, "materials": list(masks)})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_labels(folder, name, labels):
    folder.mkdir(exist_ok=True)
    Image.fromarray(labels.astype(np.uint16)).save(folder / f"{name}.labels.png")


@pytest.fixture
def dataset(tmp_path):
    # Image a (difficulty 1): SrTiO3 = top half, Ge = bottom half. Image b (difficulty 2): left/right.
    return write_dataset(tmp_path / "data", [("a", 1, {"SrTiO3": TOP, "Ge": ~TOP}),
                                             ("b", 2, {"SrTiO3": LEFT, "Ge": ~LEFT})])


@pytest.fixture
def raw(tmp_path):
    # Prediction for a: label 1 = top half exactly; the bottom half split into rows 16-23 (2) and
    # rows 24-31 (3). No prediction for b.
    labels = np.ones((SIDE, SIDE), np.uint16)
    labels[16:24], labels[24:] = 2, 3
    write_labels(tmp_path / "raw", "a", labels)
    return tmp_path / "raw"


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# Image a, by hand: SrTiO3 is matched by label 1 alone (IoU 1). Ge (256 px) is matched by two
# 128 px fragments with IoU 0.5 each: mean IoU 0.5, recall 0.5, precision 1, F1 2/3, FPR 0.5.
A_IOU = 100 * (1 + 0.5) / 2
A_FPR = 100 * (0 + 0.5) / 2
A_F1 = 100 * (1 + 2 / 3) / 2
# PQ: only label 1 has IoU > 0.5 (the fragments have exactly 0.5): TP 1, FP 2, FN 1 -> 1 / 2.5.
A_PQ = 100 * 1 / (1 + 2 / 2 + 1 / 2)
# Boundary band width round(0.02 * 45.3) = 1. Each half's band is the ring of a 32x16 rectangle
# (2*32 + 2*14 = 92 px); a fragment's ring (32x8) has 2*32 + 2*6 = 76 px and shares row 16 (32 px)
# plus columns 0 and 31 of rows 17-23 (14 px) with Ge's ring: IoU 46 / (92 + 76 - 46) = 46/122.
A_BOUNDARY_IOU = 100 * (1 + 46 / 122) / 2


def test_scores_csv_and_summary_match_hand_computation(dataset, raw, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_evaluate("--pred", raw, "--gt", dataset, "--out", out) == 0
    rows = {row["name"]: row for row in read_csv(out / "scores.csv")}
    a, b = rows["a"], rows["b"]
    assert float(a["iou"]) == pytest.approx(A_IOU, abs=1e-4)
    assert float(a["recall"]) == pytest.approx(75.0, abs=1e-4)
    assert float(a["precision"]) == pytest.approx(100.0, abs=1e-4)
    assert float(a["f1"]) == pytest.approx(A_F1, abs=1e-4)
    assert float(a["fpr"]) == pytest.approx(A_FPR, abs=1e-4)
    assert float(a["pq"]) == pytest.approx(A_PQ, abs=1e-4)
    assert float(a["boundary_iou"]) == pytest.approx(A_BOUNDARY_IOU, abs=1e-4)
    assert (a["n_gt"], a["n_pred"], a["missing_prediction"]) == ("2", "3", "False")
    # b has no prediction file: scored as an empty prediction, all zeros, and said so.
    assert b["missing_prediction"] == "True" and float(b["iou"]) == 0.0 and float(b["f1"]) == 0.0
    printed = capsys.readouterr().out
    assert "no prediction for 1 of 2 images" in printed and "scored as empty" in printed
    # Summary: class 1 = image a, class 2 = image b (0), all = mean of the two images.
    summary = {row["difficulty"]: row for row in read_csv(out / "summary.csv")}
    assert float(summary["1"]["iou"]) == pytest.approx(A_IOU, abs=1e-4)
    assert float(summary["2"]["iou"]) == 0.0
    assert float(summary["all"]["iou"]) == pytest.approx(A_IOU / 2, abs=1e-4)
    assert summary["all"]["n_images"] == "2"
    for chart in ("performance.png", "errors.png"):
        with Image.open(out / chart) as image:
            assert image.format == "PNG" and image.size[0] > 100


def test_two_methods_side_by_side_with_npz_masks(dataset, raw, tmp_path, capsys):
    boosted = tmp_path / "boosted"
    boosted.mkdir()
    # Exact ground truth for both images, a as an .npz mask stack, b as a label map.
    np.savez(boosted / "a.npz", masks=np.stack([TOP, ~TOP]))
    write_labels(boosted, "b", np.where(LEFT, 1, 2))
    out = tmp_path / "out"
    run_evaluate("--pred", raw, "--label", "raw", "--pred", boosted, "--label", "boosted",
                 "--gt", dataset, "--out", out)
    summary = {(row["label"], row["difficulty"]): row for row in read_csv(out / "summary.csv")}
    assert float(summary[("boosted", "all")]["iou"]) == pytest.approx(100.0)
    assert float(summary[("boosted", "all")]["fpr"]) == 0.0
    assert float(summary[("raw", "1")]["iou"]) == pytest.approx(A_IOU, abs=1e-4)
    table = capsys.readouterr().out
    assert "raw" in table and "boosted" in table and "mIoU" in table


def test_weighted_variant(dataset, raw, tmp_path):
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"SrTiO3": 10}))  # Ge is not listed: weight 1
    out = tmp_path / "out"
    run_evaluate("--pred", raw, "--gt", dataset, "--out", out, "--weights", weights)
    a = read_csv(out / "scores.csv")[0]
    # (10 * 1 + 1 * 0.5) / 11; the plain mean is unchanged.
    assert float(a["weighted_iou"]) == pytest.approx(100 * 10.5 / 11, abs=1e-4)
    assert float(a["iou"]) == pytest.approx(A_IOU, abs=1e-4)
    weights.write_text(json.dumps({"SrTiO3": -1}))
    with pytest.raises(SamiamError, match="non-negative"):
        run_evaluate("--pred", raw, "--gt", dataset, "--weights", weights)


def test_iou_threshold_option(dataset, raw, tmp_path):
    out = tmp_path / "out"
    # tau = 0.5: the two Ge fragments (IoU exactly 0.5) no longer match; only SrTiO3 scores: 1 / 2.
    run_evaluate("--pred", raw, "--gt", dataset, "--out", out, "--iou-threshold", "0.5")
    assert float(read_csv(out / "scores.csv")[0]["iou"]) == pytest.approx(50.0, abs=1e-4)


def labelstudio_task(image, regions):
    return {"id": 7, "data": {"image": image}, "annotations": [{"was_cancelled": False, "result": [
        {"from_name": "tag", "to_name": "image", "type": "brushlabels", "original_width": SIDE,
         "original_height": SIDE, "image_rotation": 0,
         "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}
        for label, mask in regions]}]}


def test_labelstudio_export_as_ground_truth(raw, tmp_path):
    # SrTiO3 drawn as two regions (left and right quarter of the top half): merged into one mask.
    top_left, top_right = TOP & LEFT, TOP & ~LEFT
    export = tmp_path / "export.json"
    export.write_text(json.dumps([labelstudio_task("/data/upload/1/0123abcd-a.png",
                                                   [("SrTiO3", top_left), ("Ge", ~TOP), ("SrTiO3", top_right)])]))
    (truth,) = read_ground_truth(export)
    assert truth.name == "a" and truth.labels == ("SrTiO3", "Ge") and truth.difficulty is None
    np.testing.assert_array_equal(truth.masks, [TOP, ~TOP])
    out = tmp_path / "out"
    run_evaluate("--pred", raw, "--gt", export, "--out", out)
    assert float(read_csv(out / "scores.csv")[0]["iou"]) == pytest.approx(A_IOU, abs=1e-4)
    # No difficulty classes in an export: only the overall row.
    assert [row["difficulty"] for row in read_csv(out / "summary.csv")] == ["all"]


def test_labelstudio_image_names():
    assert labelstudio_image_name("/data/upload/3/1a2b3c4d-d2_s0007.png") == "d2_s0007"
    assert labelstudio_image_name("/data/local-files/?d=bench/images/d1_s0001.png") == "d1_s0001"
    assert labelstudio_image_name("s3://bucket/d3_s0002.tif") == "d3_s0002"
    assert labelstudio_image_name("/data/upload/3/notahex-name.png") == "notahex-name"


def test_bad_inputs_raise_clear_errors(dataset, raw, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SamiamError, match="no predictions in .*empty"):
        find_predictions(empty)
    with pytest.raises(SamiamError, match="manifest.json"):
        read_ground_truth(empty)
    small = tmp_path / "small"
    write_labels(small, "a", np.ones((16, 16)))
    with pytest.raises(MaskSetError, match=r"a\.labels\.png.*16x16"):
        run_evaluate("--pred", small, "--gt", dataset)
    with pytest.raises(SamiamError, match="one --label per --pred"):
        run_evaluate("--pred", raw, "--pred", raw, "--label", "x", "--gt", dataset)
    np.savez(raw / "a.npz", masks=np.zeros((1, SIDE, SIDE), bool))
    with pytest.raises(SamiamError, match="two predictions for 'a'"):
        find_predictions(raw)
