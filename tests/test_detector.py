"""The Detector's output contract and the mapping of boxes back to original pixels."""

import numpy as np
import pytest
import tensorflow as tf

from kdod.data.geometry import to_pixels
from kdod.detection.anchors import AnchorConfig
from kdod.detection.detector import Detector, DetectorConfig


@pytest.mark.parametrize("neck", ["fpn", "fpn_lite"])
def test_detector_returns_the_design_contract(neck):
    anchors = AnchorConfig(min_level=3, max_level=6, scales_per_octave=1, aspect_ratios=(1, 3))
    model = Detector(DetectorConfig(backbone="tiny_cnn", neck=neck, image_size=64, num_classes=2,
                                    anchor_config=anchors, head_convs=1))
    outputs = model(tf.zeros([3, 64, 64, 3], tf.uint8))
    # Levels 3..6 on 64 px: 8x8, 4x4, 2x2, 1x1 cells, 2 anchors each.
    num_anchors = (64 + 16 + 4 + 1) * 2
    assert model.anchors.shape == (num_anchors, 4)
    assert outputs["cls_logits"].shape == (3, num_anchors, 2)
    assert outputs["box_regression"].shape == (3, num_anchors, 4)
    assert sorted(outputs["features"]) == [3, 4, 5, 6]
    assert outputs["features"][4].shape[:3] == (3, 4, 4)
    assert sorted(outputs["backbone_features"]) == [8, 16, 32]
    detections = model.detect(tf.zeros([3, 64, 64, 3], tf.uint8))
    assert set(detections) >= {"boxes", "scores", "classes", "num_detections"}


def test_neck_levels_beyond_the_backbone_are_built_by_strided_convs():
    model = Detector(DetectorConfig(backbone="tiny_cnn", neck="fpn", image_size=128,
                                    anchor_config=AnchorConfig(max_level=7), head_convs=1))
    features = model(tf.zeros([1, 128, 128, 3]))["features"]
    assert {lv: f.shape[1] for lv, f in features.items()} == {3: 16, 4: 8, 5: 4, 6: 2, 7: 1}


def test_boxes_map_back_to_original_pixels():
    # A 300 x 600 image letterboxed into a square window of 600 px: scale 600 per unit.
    box = np.array([[0.1, 0.25, 0.2, 0.5]])
    pixels = to_pixels(box, np.array([0.0, 0.0, 600.0, 600.0]), np.array([300, 600]))
    np.testing.assert_allclose(pixels, [[60, 150, 120, 300]])
    # Parts in the padding are clipped to the image.
    clipped = to_pixels(np.array([[0.4, 0.9, 0.6, 1.0]]), np.array([0.0, 0.0, 600.0, 600.0]),
                        np.array([300, 600]))
    np.testing.assert_allclose(clipped, [[240, 540, 300, 600]])
