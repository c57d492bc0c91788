"""Distillation losses on hand-computed cases."""

import math

import numpy as np
import pytest
import tensorflow as tf

from kdod.detection import box_coder
from kdod.distill.losses import box, feature, kl, pseudo_labels


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("form", ["sigmoid", "softmax"])
def test_kl_of_identical_logits_is_zero(form):
    logits = tf.constant([[[2.0, -1.0], [0.3, 4.0], [-3.0, 0.0]]])
    loss = kl.KLLogits(temperature=3.0, form=form)
    value = loss({"cls_logits": logits}, {"cls_logits": logits}, {})
    assert abs(float(value)) < 1e-5


def test_sigmoid_kl_matches_the_formula_with_t_squared():
    teacher, student, t = [1.0, -1.0], [0.0, 0.5], 2.0
    expected = 0.0
    for a, b in zip(teacher, student):  # Per class: KL(Bernoulli(p) || Bernoulli(q)).
        p, q = _sigmoid(a / t), _sigmoid(b / t)
        expected += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    expected *= t * t
    loss = kl.KLLogits(temperature=t, form="sigmoid", weight_by_teacher=False)
    value = loss({"cls_logits": tf.constant([[student]])}, {"cls_logits": tf.constant([[teacher]])},
                 {})
    assert float(value) == pytest.approx(expected, rel=1e-4)


def test_softmax_kl_matches_the_formula_with_t_squared():
    teacher, student, t = [1.0, -1.0], [0.0, 0.5], 2.0

    def softmax(logits):  # Background logit 0 first.
        exps = [1.0] + [math.exp(x / t) for x in logits]
        return [e / sum(exps) for e in exps]

    p, q = softmax(teacher), softmax(student)
    expected = t * t * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    loss = kl.KLLogits(temperature=t, form="softmax", weight_by_teacher=False)
    value = loss({"cls_logits": tf.constant([[student]])}, {"cls_logits": tf.constant([[teacher]])},
                 {})
    assert float(value) == pytest.approx(expected, rel=1e-4)


def test_kl_weighting_by_teacher_confidence_favours_object_anchors():
    teacher = tf.constant([[[4.0], [-6.0]]])  # An object anchor and a background anchor.
    student = tf.constant([[[0.0], [0.0]]])
    per_anchor = [float(tf.reduce_sum(kl.sigmoid_kl(teacher[0, i], student[0, i]))) for i in (0, 1)]
    weights = [_sigmoid(4.0), _sigmoid(-6.0)]
    expected = sum(v * w for v, w in zip(per_anchor, weights)) / sum(weights)
    loss = kl.KLLogits(temperature=1.0, weight_by_teacher=True)
    assert float(loss({"cls_logits": student}, {"cls_logits": teacher}, {})) == pytest.approx(
        expected, rel=1e-4)


def test_kl_normalized_by_positives_divides_the_weighted_sum_by_the_positive_count():
    teacher = tf.constant([[[4.0], [-6.0]]])
    student = tf.constant([[[0.0], [0.0]]])
    per_anchor = [float(tf.reduce_sum(kl.sigmoid_kl(teacher[0, i], student[0, i]))) for i in (0, 1)]
    batch = {"targets": {"num_positives": tf.constant([3.0])}}
    loss = kl.KLLogits(temperature=1.0, weight_by_teacher=False, normalizer="positives")
    assert float(loss({"cls_logits": student}, {"cls_logits": teacher}, batch)) == pytest.approx(
        sum(per_anchor) / 3.0, rel=1e-4)


def test_standardized_feature_imitation_ignores_per_channel_scale_and_offset():
    teacher = tf.random.stateless_normal([2, 4, 4, 3], seed=[1, 2])
    student = 5.0 * teacher + tf.constant([1.0, -2.0, 3.0])  # Same pattern, other magnitude.
    features = {"features": {3: teacher}}
    plain, pkd = feature.FeatureImitation(mask="none"), feature.FeatureImitation(
        mask="none", standardize=True)
    for loss in (plain, pkd):
        loss.build({"features": {3: student}}, features)
    assert float(plain({"features": {3: student}}, features, {})) > 1.0
    assert float(pkd({"features": {3: student}}, features, {})) < 1e-4
    flipped = {"features": {3: -student}}  # Anti-correlated: 2 * (1 - (-1)) = 4.
    assert float(pkd(flipped, features, {})) == pytest.approx(4.0, rel=1e-3)


def test_gt_mask_selects_cells_whose_centres_are_inside_boxes():
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    mask = feature.gt_mask(4, 4, boxes, tf.constant([[0, -1]])).numpy()[0]
    expected = np.zeros((4, 4))
    expected[:2, :2] = 1
    np.testing.assert_array_equal(mask, expected)


def _quadrant_anchors():
    """A 2x2 grid, one anchor per cell: the four quadrants of the image, row by row."""
    return tf.constant([[0.0, 0.0, 0.5, 0.5], [0.0, 0.5, 0.5, 1.0],
                        [0.5, 0.0, 1.0, 0.5], [0.5, 0.5, 1.0, 1.0]])


@pytest.mark.parametrize("psi, expected", [
    (0.5, [[1, 0], [0, 0]]),  # IoUs 2/3 and 1/4; threshold 1/3 keeps the first only.
    (0.3, [[1, 1], [0, 0]]),  # threshold 0.2 keeps both.
])
def test_fine_grained_mask_keeps_anchors_above_psi_times_the_best_iou(psi, expected):
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.75]]])
    (mask,) = feature.fine_grained_masks([(2, 2)], _quadrant_anchors(), boxes,
                                         tf.constant([[0]]), psi)
    np.testing.assert_array_equal(mask.numpy()[0], expected)


def test_fine_grained_mask_ignores_padding_boxes():
    boxes = tf.constant([[[0.0, 0.0, 0.5, 0.5]]])
    (mask,) = feature.fine_grained_masks([(2, 2)], _quadrant_anchors(), boxes,
                                         tf.constant([[-1]]), 0.5)
    assert mask.numpy().sum() == 0


def test_bounded_regression_is_zero_where_the_student_beats_the_teacher():
    targets = tf.constant([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    student = tf.constant([[[1.0, 1.0, 1.0, 1.5], [0.0, 0.0, 0.0, 2.0]]])  # errors 0.25, 4
    teacher = tf.constant([[[1.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0]]])  # errors 1, 1
    per_anchor = box.bounded_regression_per_anchor(student, teacher, targets, margin=0.0)
    np.testing.assert_allclose(per_anchor.numpy(), [[0.0, 4.0]])
    # With a margin of 1, the first anchor is penalised too: 0.25 + 1 > 1.
    per_anchor = box.bounded_regression_per_anchor(student, teacher, targets, margin=1.0)
    np.testing.assert_allclose(per_anchor.numpy(), [[0.25, 4.0]])
    loss = box.BoundedRegression()
    value = loss({"box_regression": student}, {"box_regression": teacher},
                 {"targets": {"box_targets": targets, "box_weights": tf.constant([[1.0, 1.0]])}})
    assert float(value) == pytest.approx(2.0)


def test_box_imitation_only_counts_anchors_the_teacher_is_confident_about():
    anchors = tf.constant([[0.1, 0.1, 0.3, 0.5], [0.5, 0.5, 0.7, 0.9]])
    teacher = {"box_regression": tf.zeros([1, 2, 4]),
               "cls_logits": tf.constant([[[3.0], [-3.0]]])}  # confident on anchor 0 only
    moved = box_coder.encode(tf.constant([[[0.1, 0.1, 0.3, 0.6], [0.0, 0.0, 1.0, 1.0]]]),
                             anchors)
    value = box.BoxImitation(form="l1")({"box_regression": moved}, teacher,
                                        {"student_anchors": anchors})
    assert float(value) == pytest.approx(0.1, abs=1e-5)  # Only xmax of anchor 0 moved, by 0.1.


def test_box_imitation_on_detections_uses_matched_confident_teacher_boxes_only():
    anchors = _quadrant_anchors()
    teacher = {"detections": {  # What an exported teacher gives: no head outputs, no anchors.
        "boxes": tf.constant([[[0.0, 0.0, 0.5, 0.6], [0.5, 0.5, 1.0, 1.0]]]),
        "scores": tf.constant([[0.9, 0.3]]), "classes": tf.constant([[0, 0]]),
        "num_detections": tf.constant([2])}}
    student = {"box_regression": tf.zeros([1, 4, 4]), "cls_logits": tf.zeros([1, 4, 1])}
    loss = box.BoxImitation(form="l1", score_threshold=0.5, match="detections")
    assert not loss.anchor_level
    # Anchor 0 matches the 0.9 box (IoU 0.83): |0.6 - 0.5| = 0.1. The 0.3 box (exactly anchor
    # 3) is below the threshold and teaches nothing.
    value = loss(student, teacher, {"student_anchors": anchors, "teacher_anchors": None})
    assert float(value) == pytest.approx(0.1, abs=1e-5)


def test_pseudo_labels_respect_the_score_threshold():
    anchors = tf.constant([[0.1, 0.1, 0.3, 0.5], [0.5, 0.5, 0.7, 0.9], [0.6, 0.0, 0.8, 0.3]])
    scores = [0.9, 0.3, 0.6]
    logits = tf.constant([[[math.log(s / (1 - s))] for s in scores]])
    teacher_out = {"cls_logits": logits, "box_regression": tf.zeros([1, 3, 4])}
    boxes, labels = pseudo_labels.teacher_pseudo_boxes(teacher_out, anchors, 0.5, 8)
    kept = boxes.numpy()[0][labels.numpy()[0] >= 0]
    np.testing.assert_allclose(sorted(kept.tolist()), sorted([anchors.numpy()[0].tolist(),
                                                              anchors.numpy()[2].tolist()]),
                               atol=1e-5)
    boxes, labels = pseudo_labels.teacher_pseudo_boxes(teacher_out, anchors, 0.95, 8)
    assert (labels.numpy() < 0).all()


def test_attention_transfer_plugin_is_registered_through_its_entry_point():
    import kdod

    loss = kdod.LOSSES.get("attention_transfer")(p=2.0)
    pattern = tf.constant([[[[1.0, 2.0]], [[0.0, 0.0]]]])  # [1, 2, 1, 2]: attention on row 0
    other = tf.constant([[[[0.0, 0.0]], [[3.0, 1.0]]]])  # attention on row 1
    same = loss({"features": {3: pattern}}, {"features": {3: 3.0 * pattern}}, {})
    assert float(same) == pytest.approx(0.0, abs=1e-6)  # Scale-free: maps are normalized.
    opposite = loss({"features": {3: pattern}}, {"features": {3: other}}, {})
    assert float(opposite) == pytest.approx(math.sqrt(2.0), rel=1e-5)  # [1, 0] vs [0, 1].
