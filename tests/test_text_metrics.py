"""Plate-text metrics on hand-computed cases."""

import numpy as np
import pytest

from kdod.errors import KdodError
from kdod.metrics import text


@pytest.mark.parametrize("a, b, distance", [
    ("", "", 0), ("ABC", "ABC", 0), ("ABC", "", 3), ("", "AB", 2),
    ("AB12CDE", "AB12CD", 1),  # one deletion
    ("AB12CDE", "A812CDE", 1),  # one substitution
    ("KITTEN", "SITTING", 3),  # the textbook case
])
def test_edit_distance(a, b, distance):
    assert text.edit_distance(a, b) == distance


def test_exact_match_and_cer_by_hand():
    metrics = text.TextMetrics()
    metrics.add("AB12CDE", "ab 12-cde")  # exact after normalisation: 0 errors
    metrics.add("AB12CDE", "A812CDE")  # 1 substitution
    metrics.add("XYZ123", "")  # nothing read: 6 errors
    metrics.add("K1", "K1X")  # 1 insertion
    result = metrics.result()
    assert result["exact_match"] == pytest.approx(1 / 4)
    assert result["cer"] == pytest.approx((0 + 1 + 6 + 1) / (7 + 7 + 6 + 2))
    assert result["plates"] == 4


def test_end_to_end_counts_a_plate_only_when_detected_at_iou_half_and_read_exactly():
    truth_boxes = np.array([[0.1, 0.1, 0.3, 0.5], [0.6, 0.6, 0.8, 0.9], [0.0, 0.8, 0.1, 1.0]])
    truth_texts = ["AAA111", "BBB222", "CCC333"]
    detected = np.array([
        [0.6, 0.6, 0.8, 0.88],  # plate 2, IoU 0.93, read right
        [0.1, 0.1, 0.3, 0.5],  # plate 1, exact box, misread
        [0.0, 0.8, 0.1, 0.88],  # plate 3, IoU 0.4 < 0.5: does not count
    ])
    metrics = text.EndToEndMetrics()
    metrics.add_image(truth_boxes, truth_texts, detected, ["BBB222", "AAA11", "CCC333"])
    result = metrics.result()
    assert result["exact_match"] == pytest.approx(1 / 3)
    assert result["cer"] == pytest.approx((1 + 0 + 6) / 18)


def test_one_detection_matches_one_plate_best_iou_first():
    truth = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.05, 0.5, 0.55]])
    detected = np.array([[0.0, 0.05, 0.5, 0.55]])
    assert text.match_detections(truth, detected) == [None, 0]
    assert text.match_detections(truth, np.zeros((0, 4))) == [None, None]


def test_ground_truth_csv(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text("filename,plate_text\ncar1.jpg,ab-12 cde\ncar1.jpg,XY99\ncar2.png,K1\n")
    assert text.read_text_csv(path) == {"car1.jpg": ["AB12CDE", "XY99"], "car2.png": ["K1"]}
    path.write_text("car1.jpg\n")
    with pytest.raises(KdodError, match="truth.csv:1: expected 'filename,plate_text'"):
        text.read_text_csv(path)
