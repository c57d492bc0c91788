"""The distribution box head (DetectorConfig.box_bins), GFL's DFL and the `ld` loss: values
worked out by hand, the VLR, gradients, refusals, training and a distillation run."""

import math

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_GIN as TINY
from conftest import tiny_detector
from conftest import two_image_batch as _batch

import kdod
from kdod import config, train_lib, train_step
from kdod.detection import box_coder, heads, matcher
from kdod.detection import losses as detection_losses
from kdod.detection.detector import DetectorConfig
from kdod.distill.distiller import Distiller, IncompatibleTeacherError
from kdod.distill.losses import ld

# GT box (0, 0, 0.4, 0.4) and four anchors (ymin, xmin, ymax, xmax), worked out in
# test_diou_and_the_valuable_localization_region_by_hand.
GT = tf.constant([[[0.0, 0.0, 0.4, 0.4], [0.0, 0.0, 0.0, 0.0]]])  # The second row pads.
GT_LABELS = tf.constant([[0, -1]])
FOUR_ANCHORS = tf.constant([[0.0, 0.0, 0.4, 0.4],     # the box itself: DIoU 1
                            [0.0, 0.2, 0.4, 0.6],     # shifted half a width: DIoU 10/39
                            [0.0, 0.4, 0.4, 0.8],     # touching it: DIoU -1/5
                            [0.8, 0.8, 1.0, 1.0]])    # far away


def _detector(bins, name="detector"):
    return tiny_detector(4, name, box_bins=bins)


# --- the distribution head: sides, codes, DFL ------------------------------------------------

def test_side_distances_and_codes_by_hand():
    anchor = tf.constant([0.0, 0.0, 0.2, 0.4])  # Centre (0.1, 0.2), 0.2 high, 0.4 wide.
    box = tf.constant([0.05, 0.1, 0.25, 0.3])
    # top (0.1 - 0.05) / 0.2, left (0.2 - 0.1) / 0.4, bottom (0.25 - 0.1) / 0.2,
    # right (0.3 - 0.2) / 0.4.
    distances = box_coder.side_distances(box, anchor)
    np.testing.assert_allclose(distances, [0.25, 0.25, 0.75, 0.25], atol=1e-6)
    # ty = (0.75 - 0.25) / 2 * 10 = 2.5, tx = 0, th = 5 ln(1) = 0, tw = 5 ln(0.5).
    codes = box_coder.sides_to_codes(distances)
    np.testing.assert_allclose(codes, [2.5, 0.0, 0.0, 5 * math.log(0.5)], atol=1e-5)
    np.testing.assert_allclose(box_coder.decode(codes, anchor), box, atol=1e-6)
    np.testing.assert_allclose(box_coder.encode(box, anchor), codes, atol=1e-5)


def test_codes_are_those_of_the_expected_side_distances():
    # n = 2: bins at distances 0, 1, 2. Logits [0, ln 2, 0] -> p = (1/4, 1/2, 1/4), expectation
    # 1; logits [ln 3, 0, -inf-ish] -> p ~ (3/4, 1/4, 0), expectation 1/4.
    even, low = [0.0, math.log(2.0), 0.0], [math.log(3.0), 0.0, -80.0]
    codes = heads.SideDistributionToCodes()(tf.constant([[[even, low, even, low]]]))
    # top 1, left 1/4, bottom 1, right 1/4: ty = 0, tx = 0, th = 5 ln 2, tw = 5 ln(1/2).
    np.testing.assert_allclose(codes[0, 0], [0.0, 0.0, 5 * math.log(2.0), 5 * math.log(0.5)],
                               atol=1e-5)


@pytest.mark.parametrize("bins", [1, 4, 16])
def test_the_initial_side_distribution_puts_every_box_on_its_anchor(bins):
    p = tf.nn.softmax(heads.anchor_sized_logits(bins)).numpy()
    assert float(np.sum(p * box_coder.bin_distances(bins).numpy())) == pytest.approx(0.5)


def test_distribution_focal_loss_by_hand():
    # n = 2 (distances 0, 1, 2), target 0.25: the two-hot target is (3/4, 1/4, 0). Logits
    # [0, ln 2, 0] -> p = (1/4, 1/2, 1/4): DFL = -(3/4 ln 1/4 + 1/4 ln 1/2) = 7/4 ln 2.
    logits = tf.constant([[0.0, math.log(2.0), 0.0]])
    value = detection_losses.distribution_focal_loss(logits, tf.constant([0.25]))
    assert float(value[0]) == pytest.approx(1.75 * math.log(2.0), rel=1e-5)
    # A target past the last bin is clipped into it: almost all of it on bin 2 -> about ln 4.
    far = detection_losses.distribution_focal_loss(logits, tf.constant([5.0]))
    assert float(far[0]) == pytest.approx(math.log(4.0), rel=1e-3)


def test_detector_with_bins_outputs_the_distribution_and_its_codes(clean_gin):
    detector = _detector(8)
    outputs = detector(_batch()["image"])
    anchors = detector.anchors.shape[0]
    assert outputs["box_distribution"].shape == (2, anchors, 4, 9)
    assert outputs["box_regression"].shape == (2, anchors, 4)
    expected = heads.SideDistributionToCodes()(outputs["box_distribution"])
    np.testing.assert_allclose(outputs["box_regression"], expected, atol=1e-6)
    assert "box_distribution" not in _detector(0)(_batch()["image"])


def test_bad_box_bins_and_dfl_without_bins_are_named(clean_gin):
    with pytest.raises(config.ConfigError, match=r"DetectorConfig.box_bins must be an integer "
                                                 r">= 0, got -1"):
        DetectorConfig(box_bins=-1)
    detector = _detector(0)
    batch = _batch()
    with pytest.raises(config.ConfigError, match=r"dfl_weight > 0 needs a distribution box "
                                                 r"head: set DetectorConfig.box_bins"):
        detection_losses.detection_loss(detector(batch["image"]), detector.targets(batch),
                                        detector.anchors, dfl_weight=0.25)


def test_detector_with_bins_and_dfl_trains_with_a_falling_finite_loss(clean_gin):
    detector = _detector(8)
    gin.bind_parameter("detection_loss.dfl_weight", 0.25)
    detector.compile(optimizer=train_lib.make_optimizer(total_steps=30, learning_rate=0.01,
                                                        warmup_steps=0))
    batch = _batch()
    totals, dfl = [], []
    for _ in range(30):
        logs = train_step.train_batch(detector, batch)
        totals.append(float(logs["total"]))
        dfl.append(float(logs["dfl_loss"]))
    assert np.all(np.isfinite(totals))
    assert totals[-1] < 0.5 * totals[0], totals
    assert dfl[-1] < dfl[0], dfl


# --- the ld loss -------------------------------------------------------------------------------

UNIFORM, SKEWED = [0.0, 0.0], [2 * math.log(3.0), 0.0]


def _ld_inputs(student_sides, teacher_sides, positives, boxes=GT, labels=GT_LABELS,
               anchors=FOUR_ANCHORS):
    student = {"box_distribution": tf.constant([student_sides], tf.float32)}
    teacher = {"box_distribution": tf.constant([teacher_sides], tf.float32)}
    batch = {"targets": {"box_weights": tf.constant([positives], tf.float32)},
             "student_anchors": anchors, "boxes": boxes, "labels": labels}
    return student, teacher, batch


def test_ld_is_t_squared_times_the_side_kl_averaged_over_sides_and_positives():
    # n = 1 (two bins), T = 2. Teacher logits [0, 0]: p = (1/2, 1/2). Student [2 ln 3, 0] / T =
    # [ln 3, 0]: q = (3/4, 1/4). KL(p || q) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3); times T^2 = 4:
    # 2 ln(4/3). Anchor 0 has one skewed side of 4 -> 1/2 ln(4/3); anchor 1 equals the teacher.
    # Both positive: mean over them 1/4 ln(4/3) = 0.071921. Anchors 2, 3 are negatives whose
    # (large) differences do not count; VLR off.
    teacher = [[UNIFORM] * 4] * 4
    student = [[SKEWED, UNIFORM, UNIFORM, UNIFORM], [UNIFORM] * 4, [SKEWED] * 4, [SKEWED] * 4]
    loss = ld.LocalizationDistillation(temperature=2.0, vlr=False)
    value = loss(*_ld_inputs(student, teacher, [1, 1, 0, 0]))
    assert float(value) == pytest.approx(math.log(4 / 3) / 4, rel=1e-5)
    assert float(ld.side_kl(tf.constant(UNIFORM), tf.constant(SKEWED), 2.0)) == pytest.approx(
        2 * math.log(4 / 3), rel=1e-5)


def test_diou_and_the_valuable_localization_region_by_hand():
    # Anchor 1 against the box: intersection 0.4 x 0.2 = 0.08, union 0.16 + 0.16 - 0.08 = 0.24,
    # IoU 1/3; centres (0.2, 0.2) and (0.2, 0.4): rho^2 = 0.04; enclosing box 0.4 x 0.6:
    # c^2 = 0.52; DIoU = 1/3 - 1/13 = 10/39. Anchor 2: IoU 0, rho^2 = 0.16, c^2 = 0.8: -1/5.
    diou = matcher.pairwise_diou(FOUR_ANCHORS, GT[0, :1])[:, 0].numpy()
    np.testing.assert_allclose(diou[:3], [1.0, 10 / 39, -0.2], atol=1e-6)
    assert diou[3] < 0
    # alpha_vl * alpha_pos = 0.25 * 0.5 = 0.125 <= 10/39 < 0.5: anchor 1 only (anchor 0 is
    # above 0.5 and positive; the padding box never counts).
    region = ld.valuable_localization_region(FOUR_ANCHORS, GT, GT_LABELS,
                                             tf.constant([[1.0, 0, 0, 0]]), 0.25, 0.5)
    np.testing.assert_array_equal(region, [[0, 1, 0, 0]])
    # alpha_vl = 0.8: the band starts at 0.4 > 10/39, empty.
    assert not ld.valuable_localization_region(FOUR_ANCHORS, GT, GT_LABELS,
                                               tf.zeros([1, 4]), 0.8, 0.5).numpy().any()
    # A positive anchor (a forced match, say) is main region, never VLR.
    assert not ld.valuable_localization_region(FOUR_ANCHORS, GT, GT_LABELS,
                                               tf.constant([[1.0, 1, 0, 0]]), 0.25,
                                               0.5).numpy().any()
    # An image without boxes has no VLR.
    assert not ld.valuable_localization_region(FOUR_ANCHORS, tf.zeros([1, 0, 4]),
                                               tf.zeros([1, 0], tf.int32), tf.zeros([1, 4]),
                                               0.25, 0.5).numpy().any()


def test_ld_adds_the_vlr_term_times_its_weight():
    # Anchor 0 (positive) equals the teacher; anchor 1 (VLR, see above) has all 4 sides skewed:
    # 2 ln(4/3) each at T = 2, mean over sides 2 ln(4/3); anchors 2, 3 are outside both regions.
    teacher = [[UNIFORM] * 4] * 4
    student = [[UNIFORM] * 4, [SKEWED] * 4, [SKEWED] * 4, [SKEWED] * 4]
    inputs = _ld_inputs(student, teacher, [1, 0, 0, 0])
    loss = ld.LocalizationDistillation(temperature=2.0, vlr=True, vlr_weight=0.5)
    assert float(loss(*inputs)) == pytest.approx(0.5 * 2 * math.log(4 / 3), rel=1e-5)
    assert float(ld.LocalizationDistillation(temperature=2.0, vlr=False)(*inputs)) == 0.0


def test_ld_gradients_reach_the_student_distribution_and_never_the_teacher():
    student = tf.Variable(tf.random.stateless_normal([1, 4, 4, 5], seed=[0, 1]))
    teacher = tf.Variable(tf.random.stateless_normal([1, 4, 4, 5], seed=[0, 2]))
    _, _, batch = _ld_inputs([[UNIFORM] * 4] * 4, [[UNIFORM] * 4] * 4, [1, 0, 0, 0])
    loss = ld.LocalizationDistillation()
    with tf.GradientTape(persistent=True) as tape:
        value = loss({"box_distribution": student}, {"box_distribution": teacher}, batch)
    student_gradient = tape.gradient(value, student).numpy()
    assert tape.gradient(value, teacher) is None
    # Anchor 0 (main) and anchor 1 (VLR) are taught; anchors 2 and 3 get no gradient.
    assert np.abs(student_gradient[0, :2]).min() > 0
    assert not student_gradient[0, 2:].any()
    assert float(loss({"box_distribution": teacher}, {"box_distribution": teacher},
                      batch)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("student_bins, teacher_bins, fix", [
    (16, 0, r"train the teacher with DetectorConfig.box_bins = 16"),
    (0, 0, r"train the teacher with DetectorConfig.box_bins = 16"),
    (8, 16, r"set DetectorConfig.box_bins = 16 in the student's gin"),
    (0, 4, r"set DetectorConfig.box_bins = 4 in the student's gin"),
])
def test_ld_refuses_models_without_the_same_bins_naming_both(clean_gin, student_bins,
                                                             teacher_bins, fix):
    student = _detector(student_bins, "student")
    teacher = _detector(teacher_bins, "teacher")
    message = (rf"teacher has DetectorConfig.box_bins = {teacher_bins} and the student "
               rf"{student_bins}: {fix}")
    with pytest.raises(IncompatibleTeacherError, match=message):
        Distiller(student, teacher, {"ld": 1.0})


def test_ld_is_registered_and_configured_through_gin(clean_gin):
    assert "ld" in kdod.LOSSES.list()
    gin.parse_config(["ld.temperature = 4.0", "ld.vlr = False", "ld.vlr_alpha = 0.5",
                      "ld.vlr_weight = 0.3"])
    loss = kdod.LOSSES.get("ld")()
    assert (loss.temperature, loss.vlr, loss.vlr_alpha, loss.vlr_weight) == (4.0, False, 0.5, 0.3)
    assert loss.anchor_level
    with pytest.raises(config.ConfigError, match=r"ld.temperature must be a number > 0"):
        ld.LocalizationDistillation(temperature=0.0)


# --- through train_lib.train -------------------------------------------------------------------

def test_ld_distillation_run_from_the_shipped_gin_files(tiny_data_dir, tmp_path, clean_gin):
    """gin/distribution_head.gin trains the teacher; gin/losses/ld.gin distills the student."""
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    common = [f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.steps = 10",
              "train.summary_images = 0"]
    config.parse_gin([TINY, "distribution_head.gin"], common)
    train_lib.train(str(teacher_dir))

    gin.clear_config()
    config.parse_gin([TINY, "losses/ld.gin"], [
        *common, "tiny_cnn.width = 4", f"DistillerConfig.teacher_dir = '{teacher_dir}'",
        "ld.temperature = 5.0"])
    model = train_lib.train(str(student_dir))
    assert isinstance(model, Distiller)
    assert model.teacher.config.box_bins == 16 and model.student.config.box_bins == 16
    assert model.loss_fns[0].temperature == 5.0
    history = model.history.history
    assert np.all(np.isfinite(history["ld"])) and np.all(np.isfinite(history["dfl_loss"]))
    assert max(history["ld"]) > 0  # The two models differ, so there is something to distill.


def test_warm_start_names_box_bins_when_they_differ(tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], [f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.steps = 2",
                              "train.summary_images = 0"])
    train_lib.train(str(tmp_path / "source"))
    gin.bind_parameter("DetectorConfig.box_bins", 16)
    with pytest.raises(train_lib.WarmStartError, match=r"DetectorConfig.box_bins: 16 vs 0"):
        train_lib.train(str(tmp_path / "target"), init_from=str(tmp_path / "source"))
