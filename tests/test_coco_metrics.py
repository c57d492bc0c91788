"""COCO metrics through pycocotools on cases whose AP is computed by hand.

pycocotools (cocoeval.py, accumulate) per IoU threshold: sorts detections by score, takes
cumulative recall and precision, makes precision non-increasing from the right, then reads it
at the 101 recall thresholds 0, 0.01, ..., 1 (the first detection whose recall reaches the
threshold; 0 where recall never does). AP is the mean over those 101 points and over the
10 IoU thresholds 0.50, 0.55, ..., 0.95.
"""

import numpy as np
import pytest

from kdod.metrics.coco import METRIC_NAMES, CocoEvaluator


def test_perfect_detections_give_ap_one():
    # Box areas 1200 (medium), 10000 (large) and 400 (small) pixels, two classes.
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[10, 20, 30, 80], [50, 50, 150, 150]], [0, 0],
                  [[10, 20, 30, 80], [50, 50, 150, 150]], [0.9, 0.6], [0, 0], (200, 200))
    evaluator.add("b.jpg", [[0, 0, 20, 20]], [1], [[0, 0, 20, 20]], [0.3], [1], (100, 100))
    result = evaluator.result()
    assert list(result) == list(METRIC_NAMES)
    for name in ("AP", "AP50", "AP75", "AR100", "AP_small", "AP_medium", "AP_large"):
        assert result[name] == pytest.approx(1.0), name
    assert "Average Precision" in evaluator.summary


def test_boxes_are_converted_to_coco_xywh():
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[10, 20, 30, 80]], [0], [], [], [], (100, 100))
    annotation = evaluator._ground_truth[0]
    assert annotation["bbox"] == [20, 10, 60, 20]  # x, y, width, height
    assert annotation["area"] == 1200 and annotation["category_id"] == 1


def test_one_hit_one_false_positive_gives_51_of_101():
    # 2 ground-truth boxes; detection 0.9 matches one exactly, 0.8 overlaps nothing.
    # At every IoU threshold: recall [0.5, 0.5], precision [1, 0.5]. Recall thresholds
    # 0.00 .. 0.50 (51 of 101) find precision 1.0 at the first detection; 0.51 .. 1.00 are
    # never reached -> 0. AP = 51 / 101 = 0.50495 at every threshold, so AP = AP50 = AP75.
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[10, 10, 50, 50], [60, 60, 90, 90]], [0, 0],
                  [[10, 10, 50, 50], [0, 60, 20, 90]], [0.9, 0.8], [0, 0], (100, 100))
    result = evaluator.result()
    for name in ("AP", "AP50", "AP75"):
        assert result[name] == pytest.approx(51 / 101), name
    assert result["AR100"] == pytest.approx(0.5)


def test_iou_0625_counts_for_three_of_ten_thresholds():
    # Ground truth 10 x 10 pixels, detection the same box 6.25 wide: IoU 62.5 / 100 = 0.625,
    # a match at thresholds 0.50, 0.55, 0.60 (AP 1 each) and a false positive at the 7 others
    # (AP 0). AP = 3 / 10; the box (area 100) is small, so AP_small is the same and
    # AP_medium / AP_large have no ground truth (-1).
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], [[0, 0, 10, 6.25]], [0.5], [0], (64, 64))
    result = evaluator.result()
    assert result["AP"] == pytest.approx(0.3)
    assert result["AP50"] == pytest.approx(1.0) and result["AP75"] == 0.0
    assert result["AP_small"] == pytest.approx(0.3)
    assert result["AP_medium"] == -1.0 and result["AP_large"] == -1.0


def test_no_detections_give_zero_not_a_crash():
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], np.zeros([0, 4]), [], [], (64, 64))
    result = evaluator.result()
    assert result["AP"] == 0.0 and result["AR100"] == 0.0


def test_wrong_class_is_not_a_hit():
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0.9], [1], (64, 64))
    assert evaluator.result()["AP"] == 0.0


def test_no_ground_truth_is_a_clear_error():
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [], [], [[0, 0, 10, 10]], [0.9], [0], (64, 64))
    with pytest.raises(ValueError, match="no ground-truth boxes"):
        evaluator.result()


def test_duplicate_image_and_reset():
    evaluator = CocoEvaluator()
    evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], [], [], [], (64, 64))
    with pytest.raises(ValueError, match="already added"):
        evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], [], [], [], (64, 64))
    evaluator.reset()
    evaluator.add("a.jpg", [[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0.9], [0], (64, 64))
    assert evaluator.result()["AP"] == pytest.approx(1.0)
