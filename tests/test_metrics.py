"""The paper's metrics on small hand-made masks; every expected value is worked out in a comment."""

import numpy as np
import pytest

from samiam.errors import MaskSetError
from samiam.metrics import (
    ALL,
    METRICS,
    boundary_masks,
    boundary_width,
    masks_from_labels,
    pair_stats,
    panoptic_quality,
    score_image,
    summarize,
)
from samiam.settings import MetricSettings


def grid(*pictures: str) -> np.ndarray:
    """Mask stack from ASCII pictures: '#' = inside, '.' = outside -> (N, H, W) bool."""
    return np.array([[[c == "#" for c in row] for row in picture.split()] for picture in pictures])


def test_pair_stats_counts_intersections_and_areas():
    pred = grid("##.. ##.. .... ....", ".... ...# ...# ....")
    gt = grid("#... #... #... ....")
    stats = pair_stats(pred, gt)
    # pred 0 (4 px) shares the two left pixels of rows 0-1 with gt (3 px); pred 1 (2 px) shares none.
    np.testing.assert_array_equal(stats.intersection, [[2], [0]])
    np.testing.assert_array_equal(stats.pred_area, [4, 2])
    np.testing.assert_array_equal(stats.gt_area, [3])
    # IoU 2 / (4 + 3 - 2) = 0.4; recall 2/3; precision 2/4.
    np.testing.assert_allclose(stats.iou, [[0.4], [0.0]])
    np.testing.assert_allclose(stats.recall, [[2 / 3], [0.0]])
    np.testing.assert_allclose(stats.precision, [[0.5], [0.0]])


def test_recall_precision_f1_of_one_partial_prediction():
    # G = top-left 2x2 (4 px). P covers 3 of G's pixels plus 3 outside (6 px).
    gt = grid("##.. ##.. .... ....")
    pred = grid("###. #.## .... ....")
    s = score_image(pred, gt)
    # IoU 3 / (6 + 4 - 3) = 3/7; recall 3/4; precision 3/6; F1 = 2*0.75*0.5 / 1.25 = 0.6.
    assert s.iou == pytest.approx(100 * 3 / 7)
    assert s.recall == pytest.approx(75.0)
    assert s.precision == pytest.approx(50.0)
    assert s.f1 == pytest.approx(60.0)
    assert s.fpr == 0.0  # a single match is the best match: nothing superfluous
    assert (s.n_gt, s.n_pred) == (1, 1)


def test_gt_split_in_two_predictions_is_a_mean_over_fragments():
    # G = rows 0-1 (8 px). P1 = row 0 + left half of row 1 (6 px), P2 = right half of row 1 (2 px).
    gt = grid("#### #### .... ....")
    pred = grid("#### ##.. .... ....", ".... ..## .... ....")
    s = score_image(pred, gt)
    # IoU: P1 6/8 = 0.75, P2 2/8 = 0.25 -> mean 0.5 (a single whole mask would score 1.0).
    assert s.iou == pytest.approx(50.0)
    # Recall 0.75 and 0.25 -> 0.5; precision 1 and 1 -> 1.
    assert s.recall == pytest.approx(50.0)
    assert s.precision == pytest.approx(100.0)
    # F1: 2*0.75/1.75 = 6/7 and 2*0.25/1.25 = 0.4 -> mean (6/7 + 0.4) / 2.
    assert s.f1 == pytest.approx(100 * (6 / 7 + 0.4) / 2)
    # FPR = IoU of the non-best match (P2): 0.25.
    assert s.fpr == pytest.approx(25.0)
    # PQ: P1 (IoU 0.75) is a TP, P2 an FP: PQ = 0.75 / (1 + 1/2), SQ = 0.75, RQ = 1 / 1.5.
    assert (s.pq, s.sq, s.rq) == pytest.approx((50.0, 75.0, 100 / 1.5))
    assert score_image(pred[:1] | pred[1:], gt).iou == pytest.approx(100.0)


def test_fpr_counts_every_non_best_match_not_the_running_best():
    # G = pixels 0-9 of a 1x20 strip. In this order: Pa (3 px) IoU 0.3, Pb (6 px) IoU 0.6,
    # Pc (pixel 9) IoU 0.1. Every non-best match counts: FPR = 0.3 + 0.1 = 0.4. (The reference
    # code's running best would drop Pa, which was best when seen, and report 0.1.)
    gt = grid("#" * 10 + "." * 10)
    pred = grid("###" + "." * 17, "######" + "." * 14, "." * 9 + "#" + "." * 10)
    s = score_image(pred, gt)
    assert s.fpr == pytest.approx(40.0)
    assert s.iou == pytest.approx(100 * (0.3 + 0.6 + 0.1) / 3)


def test_no_match_gives_zeros():
    gt = grid("##.. ##.. .... ....")
    pred = grid(".... .... ..## ..##")
    s = score_image(pred, gt)
    assert all(getattr(s, m) == 0.0 for m in METRICS)
    assert (s.n_gt, s.n_pred) == (1, 1)
    # No prediction at all: also zeros (a missing prediction file is scored like this).
    empty = score_image(np.zeros((0, 4, 4), bool), gt)
    assert all(getattr(empty, m) == 0.0 for m in METRICS) and empty.n_pred == 0


def test_iou_exactly_at_threshold_is_not_a_match():
    gt = grid("#" * 20)
    # 1 px inside a 20 px GT: IoU 1/20 = 0.05, not > 0.05 -> unmatched, all zero.
    assert score_image(grid("#" + "." * 19), gt).iou == 0.0
    # 2 px: IoU 0.1 > 0.05 -> matched.
    assert score_image(grid("##" + "." * 18), gt).iou == pytest.approx(10.0)
    # A lower threshold admits the 1 px prediction.
    assert score_image(grid("#" + "." * 19), gt, iou_threshold=0.04).iou == pytest.approx(5.0)


def test_a_prediction_may_match_several_ground_truth_masks():
    # P = whole 2x4 image; G1 = left half, G2 = right half: IoU 4/8 = 0.5 with each.
    gt = grid("##.. ##..", "..## ..##")
    s = score_image(grid("#### ####"), gt)
    assert s.iou == pytest.approx(50.0)
    assert s.recall == pytest.approx(100.0)


def test_weighted_average_over_ground_truth_masks():
    # G1 (easy, weight 10) predicted exactly (IoU 1); G2 (hard, weight 1) missed (IoU 0).
    gt = grid("##.. ##..", "..## ..##")
    pred = grid("##.. ##..")
    assert score_image(pred, gt).iou == pytest.approx(50.0)  # plain mean (1 + 0) / 2
    assert score_image(pred, gt, weights=[10, 1]).iou == pytest.approx(100 * 10 / 11)
    with pytest.raises(MaskSetError, match="weight"):
        score_image(pred, gt, weights=[1])


def test_boundary_width_is_two_percent_of_the_diagonal():
    assert boundary_width(100, 100) == 3  # 0.02 * 141.4 = 2.83 -> 3
    assert boundary_width(600, 800) == 20  # 0.02 * 1000
    assert boundary_width(8, 8) == 1  # 0.02 * 11.3 = 0.23 -> at least 1
    assert boundary_width(600, 800, ratio=0.01) == 10


def test_boundary_band_of_a_small_square():
    square = grid("........ ........ ..####.. ..####.. ..####.. ..####.. ........ ........")
    # Width 1: the 4x4 square minus its 2x2 core -> 12 px ring.
    np.testing.assert_array_equal(boundary_masks(square, 1), grid(
        "........ ........ ..####.. ..#..#.. ..#..#.. ..####.. ........ ........"))
    # Width 2: the erosion is empty, the band is the whole square.
    np.testing.assert_array_equal(boundary_masks(square, 2), square)


def test_image_border_counts_as_boundary():
    # A mask covering the whole 5x5 image: its band of width 1 is the image's outer ring (16 px).
    band = boundary_masks(np.ones((1, 5, 5), bool), 1)
    np.testing.assert_array_equal(band, grid("##### #...# #...# #...# #####"))


def test_boundary_band_agrees_with_iterated_3x3_erosion():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 24, 31)) < 0.8
    for width in (1, 2, 3):
        eroded = masks.copy()
        for _ in range(width):  # one 3x3 erosion, outside the image = background
            padded = np.pad(eroded, ((0, 0), (1, 1), (1, 1)))
            eroded = np.all([padded[:, 1 + dy:25 + dy, 1 + dx:32 + dx]
                             for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        np.testing.assert_array_equal(boundary_masks(masks, width), masks & ~eroded)


def test_boundary_iou_of_a_shifted_square():
    # 8x8 image -> band width 1. G = 4x4 square at cols 2-5, P = the same square at cols 3-6.
    gt = grid("........ ........ ..####.. ..####.. ..####.. ..####.. ........ ........")
    pred = grid("........ ........ ...####. ...####. ...####. ...####. ........ ........")
    s = score_image(pred, gt)
    # Whole masks: 12 / (16 + 16 - 12) = 0.6 -> matched.
    assert s.iou == pytest.approx(60.0)
    # Rings of 12 px each share 3 px of the top and 3 px of the bottom row -> 6 / 18.
    assert s.boundary_iou == pytest.approx(100 / 3)
    assert s.boundary_recall == pytest.approx(50.0)
    assert s.boundary_precision == pytest.approx(50.0)


def test_panoptic_quality_with_one_tp_one_fp_one_fn():
    # 6x6. GA = rows 0-1 (12 px), GB = rows 4-5 (12 px).
    # P1 = rows 0-1, cols 0-4 (10 px): IoU 10/12 with GA -> TP. P2 = rows 2-3: overlaps nothing -> FP.
    # GB is matched by nothing -> FN.
    gt = grid("###### ###### ...... ...... ...... ......", "...... ...... ...... ...... ###### ######")
    pred = grid("#####. #####. ...... ...... ...... ......", "...... ...... ###### ###### ...... ......")
    s = score_image(pred, gt)
    # PQ = (10/12) / (1 + 1/2 + 1/2); SQ = 10/12; RQ = 1 / 2.
    assert s.pq == pytest.approx(100 * (10 / 12) / 2)
    assert s.sq == pytest.approx(100 * 10 / 12)
    assert s.rq == pytest.approx(50.0)


def test_panoptic_quality_matches_one_to_one():
    # Two overlapping predictions both above 0.5 with the same GT: only the better one is a TP.
    iou = np.array([[0.9], [0.6]])
    # TP 1 (0.9), FP 1 -> PQ = 0.9 / 1.5, SQ = 0.9, RQ = 1 / 1.5.
    assert panoptic_quality(iou) == pytest.approx({"pq": 60.0, "sq": 90.0, "rq": 100 / 1.5})
    # IoU exactly 0.5 is not a match.
    assert panoptic_quality(np.array([[0.5]]))["rq"] == 0.0


def test_label_map_predictions_equal_mask_stacks():
    gt = grid("##.. ##.. .... ....", ".... .... #### ####")
    labels = np.array([[1, 1, 0, 0], [1, 3, 0, 0], [3, 3, 3, 3], [3, 3, 3, 3]], np.uint16)  # label 2 unused
    masks = masks_from_labels(labels)
    assert masks.shape == (2, 4, 4)  # the empty label 2 is dropped
    assert score_image(labels, gt) == score_image(masks, gt)


def test_bad_input_raises_named_errors():
    gt = grid("##.. ##.. .... ....")
    with pytest.raises(MaskSetError, match="4x4"):
        score_image(np.zeros((1, 5, 5), bool), gt)
    with pytest.raises(MaskSetError, match="nothing to score"):
        score_image(gt, np.zeros((1, 4, 4), bool))


def test_settings_change_the_boundary_band():
    gt = grid("........ ........ ..####.. ..####.. ..####.. ..####.. ........ ........")
    pred = grid("........ ........ ...####. ...####. ...####. ...####. ........ ........")
    # Ratio 0.2 -> width round(0.2 * 11.3) = 2: the bands are the whole squares, IoU as for regions.
    wide = score_image(pred, gt, settings=MetricSettings(boundary_ratio=0.2))
    assert wide.boundary_iou == pytest.approx(60.0)


def _plain_scores(pred, gt, tau):
    """Obviously-correct loop implementation of the per-image IoU, recall, precision, F1 and FPR."""
    per_gt = []
    for g in gt:
        matched = []
        for p in pred:
            inter, union = (p & g).sum(), (p | g).sum()
            if inter / union > tau:
                r, q = inter / g.sum(), inter / p.sum()
                matched.append((inter / union, r, q, 2 * r * q / (r + q)))
        if not matched:
            per_gt.append((0, 0, 0, 0, 0))
            continue
        ious = [m[0] for m in matched]
        means = np.mean(matched, axis=0)
        per_gt.append((*means, sum(ious) - max(ious)))
    return 100 * np.mean(per_gt, axis=0)


def test_vectorised_scores_agree_with_plain_loops():
    rng = np.random.default_rng(1)
    for _ in range(5):
        gt = rng.random((3, 16, 16)) < 0.4
        pred = rng.random((6, 16, 16)) < 0.3
        s = score_image(pred, gt)
        np.testing.assert_allclose([s.iou, s.recall, s.precision, s.f1, s.fpr], _plain_scores(pred, gt, 0.05))


def test_summarize_means_per_difficulty_and_over_all_images():
    rows = [{"difficulty": 1, "iou": 10.0}, {"difficulty": 1, "iou": 30.0}, {"difficulty": 2, "iou": 80.0}]
    summary = summarize(rows, metrics=("iou",))
    # Class 1: (10 + 30) / 2 = 20; class 2: 80; all images: (10 + 30 + 80) / 3 = 40 (not (20 + 80) / 2).
    assert summary == [{"difficulty": 1, "n_images": 2, "iou": 20.0},
                       {"difficulty": 2, "n_images": 1, "iou": 80.0},
                       {"difficulty": ALL, "n_images": 3, "iou": 40.0}]
    # Without difficulty classes only the overall row is given.
    assert summarize([{"difficulty": None, "iou": 5.0}], metrics=("iou",)) == [
        {"difficulty": ALL, "n_images": 1, "iou": 5.0}]
