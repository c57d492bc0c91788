"""Anchors, box coding, matching, losses and NMS on small hand-built cases."""

import math

import gin
import numpy as np
import pytest
import tensorflow as tf

from kdod.config import ConfigError
from kdod.detection import anchors as anchors_lib
from kdod.detection import box_coder, losses, matcher, postprocess

# --- anchors -------------------------------------------------------------------------------


def test_anchor_count_is_sum_of_grid_cells_times_types():
    config = anchors_lib.AnchorConfig(min_level=3, max_level=5)  # K = 2 scales * 3 ratios
    assert config.num_anchors_per_location == 6
    assert anchors_lib.level_shapes(64, config) == [(8, 8), (4, 4), (2, 2)]
    assert anchors_lib.anchors_per_level(64, config) == [384, 96, 24]
    assert anchors_lib.generate_anchors(64, config).shape == (384 + 96 + 24, 4)
    # ceil: 100 / 32 = 3.125 -> 4 cells.
    assert anchors_lib.level_shapes(100, config)[-1] == (4, 4)


def test_anchor_centres_and_sizes_by_hand():
    config = anchors_lib.AnchorConfig(min_level=3, max_level=4, anchor_scale=2.0,
                                      scales_per_octave=1, aspect_ratios=(4.0,))
    boxes = anchors_lib.generate_anchors(64, config).numpy() * 64
    # Level 3, cell (0, 0): stride 8, centre (4, 4), base 2 * 8 = 16, w/h = 4 -> h 8, w 32.
    np.testing.assert_allclose(boxes[0], [0, -12, 8, 20], atol=1e-4)
    # Level 4, cell (y=1, x=2): index 8 * 8 + 1 * 4 + 2; centre (24, 40), base 32 -> h 16, w 64.
    np.testing.assert_allclose(boxes[70], [16, 8, 32, 72], atol=1e-4)


def test_second_octave_is_sqrt2_larger():
    config = anchors_lib.AnchorConfig(scales_per_octave=2, aspect_ratios=(1.0,))
    boxes = anchors_lib.generate_anchors(128, config).numpy() * 128
    sides = boxes[:2, 2] - boxes[:2, 0]
    np.testing.assert_allclose(sides, [32, 32 * math.sqrt(2)], rtol=1e-5)


def test_anchor_order_matches_head_output_reshape():
    config = anchors_lib.AnchorConfig(min_level=3, max_level=5)
    size, k, num_classes = 64, config.num_anchors_per_location, 2
    flat = []
    for level, (h, w) in zip(config.levels, anchors_lib.level_shapes(size, config)):
        # Channel k * C + c of cell (y, x) carries the code of (level, y, x, k).
        y, x, t, _ = np.meshgrid(np.arange(h), np.arange(w), np.arange(k),
                                 np.arange(num_classes), indexing="ij")
        head = (level * 1_000_000 + y * 10_000 + x * 100 + t).reshape(1, h, w, k * num_classes)
        flat.append(tf.reshape(tf.constant(head), [1, -1, num_classes]))
    codes = tf.concat(flat, axis=1).numpy()[0, :, 0]
    level, y, x, t = codes // 1_000_000, codes // 10_000 % 100, codes // 100 % 100, codes % 100

    boxes = anchors_lib.generate_anchors(size, config).numpy() * size
    stride = 2.0**level
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, (y + 0.5) * stride, atol=1e-3)
    np.testing.assert_allclose((boxes[:, 1] + boxes[:, 3]) / 2, (x + 0.5) * stride, atol=1e-3)
    octave, ratio = t // 3, np.asarray(config.aspect_ratios)[t % 3]
    base = config.anchor_scale * stride * 2.0 ** (octave / 2)
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], base / np.sqrt(ratio), rtol=1e-4)
    np.testing.assert_allclose(boxes[:, 3] - boxes[:, 1], base * np.sqrt(ratio), rtol=1e-4)


@pytest.mark.parametrize("kwargs", [{"min_level": 5, "max_level": 4}, {"anchor_scale": 0.0},
                                    {"scales_per_octave": 0}, {"aspect_ratios": ()},
                                    {"aspect_ratios": (1.0, -2.0)}])
def test_invalid_anchor_config_is_refused(kwargs):
    with pytest.raises(ConfigError, match="AnchorConfig"):
        anchors_lib.AnchorConfig(**kwargs)


def test_describe_differences_names_settings():
    a = anchors_lib.AnchorConfig()
    assert anchors_lib.describe_differences(a, anchors_lib.AnchorConfig(), 320, 320) == []
    b = anchors_lib.AnchorConfig(max_level=6, aspect_ratios=[1.0, 2.0])
    assert anchors_lib.describe_differences(a, b, 320, 384) == [
        "image_size: 320 vs 384", "max_level: 7 vs 6",
        "aspect_ratios: (1.5, 2.5, 4.0) vs (1.0, 2.0)"]


# --- box coder -----------------------------------------------------------------------------


def _random_boxes(rng, shape):
    corner = rng.uniform(0.0, 0.7, size=shape + (2,))
    size = rng.uniform(0.01, 0.3, size=shape + (2,))
    return np.concatenate([corner, corner + size], axis=-1).astype(np.float32)


def test_box_coder_round_trip_broadcasts_over_batch():
    rng = np.random.default_rng(0)
    anchors, boxes = _random_boxes(rng, (7,)), _random_boxes(rng, (3, 7))
    codes = box_coder.encode(boxes, anchors)
    assert codes.shape == (3, 7, 4)
    np.testing.assert_allclose(box_coder.decode(codes, anchors), boxes, atol=1e-5)


def test_box_coder_encode_by_hand():
    # Anchor centre (0.1, 0.2), size 0.2 x 0.4; box centre (0.15, 0.5), size 0.2 x 0.8.
    # ty = 0.05 / 0.2 * 10 = 2.5, tx = 0.3 / 0.4 * 10 = 7.5, th = 5 log 1 = 0, tw = 5 log 2.
    codes = box_coder.encode([[0.05, 0.1, 0.25, 0.9]], [[0.0, 0.0, 0.2, 0.4]])
    np.testing.assert_allclose(codes[0], [2.5, 7.5, 0.0, 5 * math.log(2)], rtol=1e-5, atol=1e-5)


def test_decode_clips_size_before_exp():
    boxes = box_coder.decode([[0.0, 0.0, 1e6, 1e6]], [[0.0, 0.0, 0.1, 0.1]]).numpy()
    assert np.all(np.isfinite(boxes))
    np.testing.assert_allclose(boxes[0, 2] - boxes[0, 0], 0.1 * 1000 / 16, rtol=1e-4)


# --- matcher -------------------------------------------------------------------------------

ANCHORS = np.array([
    [0.0, 0.0, 0.4, 0.4],    # 0: IoU 1.0 with gt 0 -> positive
    [0.0, 0.0, 0.4, 0.18],   # 1: IoU 0.45 with gt 0 -> ignored
    [0.0, 0.0, 0.4, 0.12],   # 2: IoU 0.3 with gt 0 -> negative
    [0.8, 0.8, 0.9, 0.82],   # 3: IoU 0.2 with tiny gt 1, its best anchor -> forced positive
    [0.5, 0.5, 0.6, 0.6],    # 4: only overlaps the padding box -> negative
    [0.8, 0.8, 0.86, 0.86],  # 5: IoU 0.11 with gt 1, not its best -> negative
], np.float32)
GT_BOXES = np.array([
    [[0.0, 0.0, 0.4, 0.4], [0.8, 0.8, 0.82, 0.82], [0.5, 0.5, 0.6, 0.6]],
    [[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],  # all padding
], np.float32)
GT_LABELS = np.array([[0, 1, -1], [-1, -1, -1]], np.int32)


def test_pairwise_iou_by_hand_and_broadcasting():
    iou = matcher.pairwise_iou(ANCHORS[None], GT_BOXES)
    assert iou.shape == (2, 6, 3)
    np.testing.assert_allclose(iou[0, :4, 0], [1.0, 0.45, 0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(iou[0, 3, 1], 0.0004 / 0.002, rtol=1e-4)
    assert iou[1, 0, 1] == 0.0  # zero-area box: no NaN


def test_match_thresholds_force_match_and_padding():
    valid = GT_LABELS >= 0
    matched = matcher.match(ANCHORS, GT_BOXES, valid).numpy()
    np.testing.assert_array_equal(matched, [[0, -2, -1, 1, -1, -1], [-1] * 6])
    unforced = matcher.match(ANCHORS, GT_BOXES, valid, force_match=False).numpy()
    np.testing.assert_array_equal(unforced[0], [0, -2, -1, -1, -1, -1])


def test_match_in_graph_with_unknown_and_empty_box_count():
    spec = [tf.TensorSpec([None, 4]), tf.TensorSpec([None, None, 4]),
            tf.TensorSpec([None, None], tf.bool)]
    graph_match = tf.function(matcher.match, input_signature=spec)
    np.testing.assert_array_equal(graph_match(ANCHORS, GT_BOXES, GT_LABELS >= 0)[0],
                                  [0, -2, -1, 1, -1, -1])
    empty = graph_match(ANCHORS, tf.zeros([2, 0, 4]), tf.zeros([2, 0], tf.bool))
    np.testing.assert_array_equal(empty, -np.ones([2, 6]))
    no_boxes = matcher.encode_targets(ANCHORS, tf.zeros([2, 0, 4]), tf.zeros([2, 0], tf.int32), 2)
    assert no_boxes["cls_targets"].shape == (2, 6, 2)
    np.testing.assert_array_equal(no_boxes["num_positives"], [0.0, 0.0])


def test_encode_targets_one_hot_and_weights():
    targets = matcher.encode_targets(ANCHORS, GT_BOXES, GT_LABELS, num_classes=2)
    expected_cls = np.zeros([2, 6, 2])
    expected_cls[0, 0, 0] = expected_cls[0, 3, 1] = 1.0
    np.testing.assert_array_equal(targets["cls_targets"], expected_cls)
    np.testing.assert_array_equal(targets["cls_weights"], [[1, 0, 1, 1, 1, 1], [1] * 6])
    np.testing.assert_array_equal(targets["box_weights"], [[1, 0, 0, 1, 0, 0], [0] * 6])
    np.testing.assert_array_equal(targets["num_positives"], [2.0, 0.0])
    box_targets = targets["box_targets"].numpy()
    np.testing.assert_allclose(box_targets[0, 0], 0.0, atol=1e-5)  # gt 0 equals anchor 0
    np.testing.assert_allclose(box_targets[0, 3], box_coder.encode(GT_BOXES[0, 1], ANCHORS[3]),
                               rtol=1e-5)
    assert np.all(box_targets[0, [1, 2, 4, 5]] == 0) and np.all(box_targets[1] == 0)


# --- losses --------------------------------------------------------------------------------


def test_focal_loss_by_hand():
    loss = losses.sigmoid_focal_loss([1.0, 0.0], [2.0, -1.0], alpha=0.25, gamma=2.0).numpy()
    # Logit 2, target 1: p = sigmoid(2) = 0.880797, p_t = p, BCE = -log p = 0.126928,
    #   FL = 0.25 * (1 - 0.880797)**2 * 0.126928 = 0.25 * 0.014209 * 0.126928 = 4.5089e-4.
    # Logit -1, target 0: p = sigmoid(-1) = 0.268941, p_t = 1 - p, BCE = -log(1 - p) = 0.313262,
    #   FL = 0.75 * 0.268941**2 * 0.313262 = 0.75 * 0.072329 * 0.313262 = 0.016994.
    p1, p2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    expected = [0.25 * (1 - p1)**2 * -math.log(p1), 0.75 * p2**2 * -math.log(1 - p2)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(loss, [4.5089e-4, 0.016994], rtol=1e-3)


def test_focal_loss_without_focusing_is_half_bce_and_stable():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=5.0, size=(4, 3)).astype(np.float32)
    targets = (rng.uniform(size=(4, 3)) > 0.5).astype(np.float32)
    bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    np.testing.assert_allclose(losses.sigmoid_focal_loss(targets, logits, alpha=0.5, gamma=0.0),
                               0.5 * bce, rtol=1e-6)
    extreme = losses.sigmoid_focal_loss([1.0, 0.0, 1.0], [-200.0, 200.0, 200.0]).numpy()
    assert np.all(np.isfinite(extreme)) and extreme[2] == 0.0


def test_huber_box_loss_by_hand():
    # delta 0.1: |e| <= 0.1 -> 0.5 e^2; else 0.5 * 0.01 + 0.1 * (|e| - 0.1).
    # e = 0.05 -> 0.00125, 0.3 -> 0.025, 0 -> 0, -1 -> 0.095; sum 0.12125.
    loss = losses.huber_box_loss(np.zeros([1, 1, 4]), [[[0.05, 0.3, 0.0, -1.0]]], delta=0.1)
    np.testing.assert_allclose(loss, [[0.12125]], rtol=1e-5)


def test_giou_loss_by_hand():
    boxes = [[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]]
    others = [[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 3.0, 3.0], [0.0, 2.0, 1.0, 3.0]]
    # identical -> 0; overlap 1, union 7, hull 9 -> 1 - (1/7 - 2/9);
    # disjoint side by side: IoU 0, union 2, hull 3 -> 1 - (0 - 1/3) = 4/3.
    np.testing.assert_allclose(losses.giou_loss(boxes, others),
                               [0.0, 1 - (1 / 7 - 2 / 9), 4 / 3], rtol=1e-6, atol=1e-7)


def test_detection_loss_normalized_by_batch_positives():
    targets = matcher.encode_targets(ANCHORS, GT_BOXES, GT_LABELS, num_classes=2)
    outputs = {"cls_logits": tf.zeros([2, 6, 2]), "box_regression": tf.zeros([2, 6, 4])}
    result = losses.detection_loss(outputs, targets, ANCHORS, huber_delta=1.0)
    # Logit 0: p = 0.5, BCE = ln 2, (1 - p_t)^2 = 0.25. Positives 2 elements * 0.25 alpha,
    # 20 weighted negative elements * 0.75; 2 positive anchors in the batch.
    expected_cls = (2 * 0.25 + 20 * 0.75) * 0.25 * math.log(2) / 2
    np.testing.assert_allclose(result["cls_loss"], expected_cls, rtol=1e-5)
    expected_box = losses.huber_box_loss(targets["box_targets"][0, 3], tf.zeros(4), 1.0) / 2
    np.testing.assert_allclose(result["box_loss"], expected_box, rtol=1e-5)
    np.testing.assert_allclose(result["total"], expected_cls + expected_box, rtol=1e-5)

    exact = dict(outputs, box_regression=targets["box_targets"])
    giou = losses.detection_loss(exact, targets, ANCHORS, box_loss="giou")
    np.testing.assert_allclose(giou["box_loss"], 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="box_loss"):
        losses.detection_loss(outputs, targets, ANCHORS, box_loss="l2")


# --- post-processing -----------------------------------------------------------------------


def _nms_case(**kwargs):
    return postprocess.postprocess(*_nms_inputs(), **kwargs)


def _nms_inputs():
    boxes = np.array([[0.0, 0.0, 0.5, 0.5],    # 0.9
                      [0.0, 0.0, 0.5, 0.45],   # 0.8, IoU 0.9 with the first -> suppressed
                      [0.6, 0.6, 1.2, 0.9],    # 0.7, separate, extends past the image
                      [0.1, 0.6, 0.3, 0.9]],   # 0.01, under the score threshold
                     np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.01], np.float32)
    logits = np.log(scores / (1 - scores))[None, :, None]
    return logits, np.zeros([1, 4, 4], np.float32), boxes


def test_nms_keeps_best_of_overlapping_and_separate_boxes():
    result = _nms_case()
    assert result["num_detections"].numpy().tolist() == [2]
    np.testing.assert_allclose(result["scores"][0, :2], [0.9, 0.7], rtol=1e-5)
    np.testing.assert_allclose(result["boxes"][0, :2],
                               [[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 1.0, 0.9]], atol=1e-5)
    assert result["classes"].dtype == tf.int32
    assert result["raw_boxes"].shape == (1, 4, 4) and result["raw_scores"].shape == (1, 4, 1)
    np.testing.assert_allclose(result["raw_boxes"][0, 2, 2], 1.2, rtol=1e-5)  # not clipped


def test_score_threshold_and_max_detections():
    assert _nms_case(score_threshold=0.75)["num_detections"].numpy().tolist() == [1]
    capped = _nms_case(max_detections=1)
    assert capped["boxes"].shape == (1, 1, 4) and capped["num_detections"].numpy()[0] == 1
    np.testing.assert_allclose(capped["scores"][0], [0.9], rtol=1e-5)
    assert _nms_case(pre_nms_top_k=2)["num_detections"].numpy().tolist() == [1]


def test_numpy_postprocess_of_one_image_by_hand():
    logits, codes, boxes = _nms_inputs()
    result = postprocess.postprocess_image(logits[0], codes[0], boxes)
    np.testing.assert_allclose(result["scores"], [0.9, 0.7], rtol=1e-5)
    np.testing.assert_allclose(result["boxes"], [[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 1.0, 0.9]],
                               atol=1e-5)
    assert result["classes"].dtype == np.int32 and result["classes"].tolist() == [0, 0]
    assert postprocess.postprocess_image(logits[0], codes[0], boxes,
                                         pre_nms_top_k=2)["scores"].shape == (1,)
    nothing = postprocess.postprocess_image(logits[0], codes[0], boxes, score_threshold=0.95)
    assert nothing["boxes"].shape == (0, 4) and nothing["scores"].shape == (0,)


@pytest.mark.parametrize("settings", [{}, {"score_threshold": 0.3, "iou_threshold": 0.3},
                                      {"max_detections": 7, "pre_nms_top_k": 40}])
def test_numpy_postprocess_equals_the_tensorflow_one(settings):
    """Crowded, overlapping boxes of three classes: the TFLite runner's detections are
    evaluation's."""
    rng = np.random.default_rng(0)
    anchors = anchors_lib.generate_anchors(64, anchors_lib.AnchorConfig())
    count = anchors.shape[0]
    logits = rng.normal(-2.0, 2.0, (1, count, 3)).astype(np.float32)
    codes = rng.normal(0.0, 1.0, (1, count, 4)).astype(np.float32)
    expected = postprocess.postprocess(logits, codes, anchors, **settings)
    found = postprocess.postprocess_image(logits[0], codes[0], np.asarray(anchors), **settings)
    shown = int(expected["num_detections"][0])
    assert shown > 5 and found["scores"].shape == (shown,)
    np.testing.assert_allclose(found["scores"], expected["scores"][0, :shown], rtol=1e-5)
    np.testing.assert_allclose(found["boxes"], expected["boxes"][0, :shown], atol=1e-5)
    np.testing.assert_array_equal(found["classes"], expected["classes"][0, :shown])


def test_postprocess_settings_are_the_gin_bindings_over_the_defaults(clean_gin):
    gin.parse_config("postprocess.score_threshold = 0.3")
    settings = postprocess.postprocess_settings()
    assert settings["score_threshold"] == 0.3 and settings["iou_threshold"] == 0.5
    assert settings["max_detections"] == 100


def test_a_layout_at_twice_the_size_one_level_up_has_the_same_anchors():
    student = anchors_lib.AnchorConfig(min_level=3, max_level=6, anchor_scale=3.0)
    teacher = anchors_lib.AnchorConfig(min_level=4, max_level=7, anchor_scale=3.0)
    assert anchors_lib.level_shift(640, 320) == 1 and anchors_lib.level_shift(320, 640) == -1
    assert anchors_lib.level_shift(512, 320) is None
    assert anchors_lib.describe_differences(teacher, student, 640, 320) == []
    np.testing.assert_allclose(anchors_lib.generate_anchors(640, teacher),
                               anchors_lib.generate_anchors(320, student), atol=1e-6)
    assert anchors_lib.describe_differences(student, student, 640, 320) == [
        "min_level: 3 vs 4", "max_level: 6 vs 7",
        ("image_size: 640 vs 320 (at 2 times the image size, the levels must be +1 from the "
         "other's)")]
