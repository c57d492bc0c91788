"""cwd, fgd, mgd and dist: hand-computed values, minima, gradients, heterogeneous pairs, gin."""

import math

import gin
import numpy as np
import pytest
import tensorflow as tf

import kdod
from kdod.distill.losses import cwd, dist, fgd, mgd

FEATURE_LOSSES = ("cwd", "fgd", "mgd")
SEEDED = {"mgd": {"seed": 0}}  # Masks that repeat from run to run.
BATCH = {"boxes": tf.constant([[[0.1, 0.1, 0.4, 0.6], [0.0, 0.0, 0.0, 0.0]],
                               [[0.5, 0.5, 0.6, 0.6], [0.2, 0.0, 0.9, 0.3]]]),
         "labels": tf.constant([[0, -1], [0, 0]])}


def _map(rows):
    """One image, one channel: [[a, b], [c, d]] -> [1, 2, 2, 1]."""
    return tf.constant(rows, tf.float32)[None, :, :, None]


def _features(channels, sizes=(4, 2), seed=0):
    """Two images' features at levels 3, 4 of the given sizes: {"features": {level: map}}."""
    return {"features": {level: tf.random.stateless_normal([2, size, size, channels],
                                                           seed=[seed, level])
                         for level, size in zip((3, 4), sizes)}}


def _make(name):
    return kdod.LOSSES.get(name)(**SEEDED.get(name, {}))


def _built(loss, student_out, teacher_out):
    loss.build(student_out, teacher_out)
    return loss


def _logits(probabilities):
    """cls_logits [1, A, C] whose sigmoids are the given [A, C] probabilities."""
    p = np.asarray(probabilities, np.float32)
    return {"cls_logits": tf.constant(np.log(p / (1 - p))[None])}


# --- cwd -------------------------------------------------------------------------------------

def test_cwd_is_t_squared_times_the_spatial_kl_averaged_over_channels():
    teacher = tf.zeros([1, 2, 2, 2])  # Every channel: uniform over the 4 positions.
    # Channel 0 of the student at T = 2: logits [ln 3, 0, 0, 0] -> q = [1/2, 1/6, 1/6, 1/6];
    # channel 1 equals the teacher's.
    student = tf.stack([_map([[2 * math.log(3.0), 0.0], [0.0, 0.0]])[..., 0],
                        tf.zeros([1, 2, 2])], axis=-1)
    # KL(1/4 || q) = 1/4 * (ln(1/2) + 3 ln(3/2)) = ln(27/16) / 4; times T^2 = 4: ln(27/16);
    # channel 1 adds 0, and the mean over 2 channels halves it: 0.26162.
    loss = _built(cwd.ChannelWiseDistillation(temperature=2.0), {"features": {3: student}},
                  {"features": {3: teacher}})
    value = loss({"features": {3: student}}, {"features": {3: teacher}}, {})
    assert float(value) == pytest.approx(math.log(27 / 16) / 2, rel=1e-5)


# --- fgd -------------------------------------------------------------------------------------

@pytest.mark.parametrize("boxes, labels, foreground, background", [
    # A box over row 0 (2 cells: 1/2 each), a box smaller than a cell inside cell (1, 1) (it
    # still covers it: 1), a padding box.
    ([[0.0, 0.0, 0.5, 1.0], [0.6, 0.6, 0.7, 0.7], [0.0, 0.0, 1.0, 1.0]], [0, 0, -1],
     [[0.5, 0.5], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]),
    # Nested boxes: each cell keeps the largest weight, 1 in the small box, 1/4 elsewhere.
    ([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]], [0, 0],
     [[1.0, 0.25], [0.25, 0.25]], [[0.0, 0.0], [0.0, 0.0]]),
    # No box: the background is uniform, 1/4 per cell.
    ([[0.0, 0.0, 1.0, 1.0]], [-1], [[0.0, 0.0], [0.0, 0.0]], [[0.25, 0.25], [0.25, 0.25]]),
])
def test_fgd_masks_weigh_each_box_by_its_area_in_cells(boxes, labels, foreground, background):
    fg, bg = fgd.foreground_background_masks(2, 2, tf.constant([boxes]), tf.constant([labels]))
    np.testing.assert_allclose(fg.numpy()[0], foreground)
    np.testing.assert_allclose(bg.numpy()[0], background)


def test_fgd_attentions_are_softmaxes_of_mean_magnitudes_scaled_to_mean_one():
    features = tf.constant([[[[1.0, 0.0], [-1.0, 0.0]]]])  # [1, 1, 2, 2]: |F| means 1, 0 by c.
    e2 = math.exp(2.0)  # T = 0.5: exp(1 / 0.5).
    np.testing.assert_allclose(fgd.channel_attention(features, 0.5).numpy(),
                               [[2 * e2 / (e2 + 1), 2 / (e2 + 1)]], rtol=1e-5)
    np.testing.assert_allclose(fgd.spatial_attention(features, 0.5).numpy(), [[[1.0, 1.0]]])


def test_fgd_adds_focal_attention_and_global_terms_by_hand():
    teacher = tf.zeros([1, 2, 2, 1])  # Uniform attentions: A_S^t = 1 everywhere, A_C^t = 1.
    student = _map([[1.0, 0.0], [0.0, 2.0]])  # d^2 = [[1, 0], [0, 4]].
    batch = {"boxes": tf.constant([[[0.0, 0.0, 0.5, 0.5]]]), "labels": tf.constant([[0]])}
    # Foreground: cell (0, 0), weight 1 -> 1. Background: 1/3 on the other cells -> 4/3.
    focal = 1.0 * 1.0 + 0.5 * 4 / 3
    # The student's spatial attention, T = 0.5: 4 * softmax([1, 0, 0, 2] / 0.5); one channel,
    # so both channel attentions are 1.
    e = np.exp([2.0, 0.0, 0.0, 4.0])
    attention = np.abs(1 - 4 * e / e.sum()).mean()  # 1.2065
    relation = (1 + 0 + 0 + 4) / 4  # The GcBlock starts as the identity.
    loss = _built(fgd.FocalGlobalDistillation(), {"features": {3: student}},
                  {"features": {3: teacher}})
    value = loss({"features": {3: student}}, {"features": {3: teacher}}, batch)
    assert float(value) == pytest.approx(focal + attention + relation, rel=1e-5)


def test_fgd_passes_both_models_through_the_same_gc_block():
    features = _features(16)
    loss = _built(fgd.FocalGlobalDistillation(), features, features)
    for block in loss.adapters:  # Non-zero weights everywhere: R is no longer the identity.
        for variable in block.trainable_variables:
            variable.assign(tf.random.stateless_normal(variable.shape, seed=[1, 2]))
    assert float(loss(features, features, BATCH)) == pytest.approx(0.0, abs=1e-6)
    block = loss.adapters[0]
    moved = block(features["features"][3]) - features["features"][3]
    assert float(tf.reduce_max(tf.abs(moved))) > 0.1


# --- mgd -------------------------------------------------------------------------------------

def _relu_generator(loss):
    """Sets every generator to relu(x): centre taps 1, other taps and biases 0."""
    for level_generator in loss.adapters:
        for conv in (level_generator.layers[0], level_generator.layers[2]):
            kernel = np.zeros(conv.kernel.shape, np.float32)
            kernel[1, 1] = np.eye(kernel.shape[2], kernel.shape[3])
            conv.kernel.assign(kernel)
            conv.bias.assign(tf.zeros_like(conv.bias))


@pytest.mark.parametrize("mask_ratio, student, expected", [
    # Nothing masked: G(F_S) = relu(F_S) = [[1, 0], [2, 0]]; minus F_T: [[0, 0], [2, -3]].
    (0.0, [[1.0, -1.0], [2.0, 0.0]], (0 + 0 + 4 + 9) / 4),
    # Everything masked: G(0) = 0, so the error is F_T^2.
    (1.0, [[1.0, -1.0], [2.0, 0.0]], (1 + 0 + 0 + 9) / 4),
    # The student's features are the teacher's, unmasked: G rebuilds them exactly.
    (0.0, [[1.0, 0.0], [0.0, 3.0]], 0.0),
])
def test_mgd_is_the_mean_squared_error_of_the_generated_features(mask_ratio, student, expected):
    student_out, teacher_out = {"features": {3: _map(student)}}, {"features": {3: _map(
        [[1.0, 0.0], [0.0, 3.0]])}}
    loss = _built(mgd.MaskedGenerativeDistillation(mask_ratio=mask_ratio), student_out,
                  teacher_out)
    _relu_generator(loss)
    assert float(loss(student_out, teacher_out, {})) == pytest.approx(expected, rel=1e-6)


def test_mgd_masks_are_drawn_anew_and_repeat_with_the_seed():
    features = tf.ones([2, 64, 64, 3])
    first, second = (mgd.MaskedGenerativeDistillation(mask_ratio=0.65, seed=7) for _ in "ab")
    masks = [first.random_mask(features) for _ in range(2)]
    assert masks[0].shape == (2, 64, 64, 1)
    assert float(tf.reduce_mean(1 - masks[0])) == pytest.approx(0.65, abs=0.03)
    assert not np.array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(second.random_mask(features), masks[0])


# --- dist ------------------------------------------------------------------------------------

@pytest.mark.parametrize("student, expected", [
    ([0.9, 0.5, 0.1], 2.0),  # Reversed order: Pearson -1.
    ([0.2, 0.5, 0.8], 0.0),  # Another scale, same order and spacing: Pearson 1.
    ([0.5, 0.9, 0.5], 1.0),  # Centred [-.13, .27, -.13] . [-.4, 0, .4] = 0: Pearson 0.
])
def test_dist_with_one_class_is_one_minus_pearson_over_the_anchors(student, expected):
    teacher = _logits([[0.1], [0.5], [0.9]])
    loss = dist.DistRelations(beta=5.0)  # beta is unused with a single class.
    value = loss(_logits([[p] for p in student]), teacher, {})
    assert float(value) == pytest.approx(expected, abs=1e-5)


def test_dist_adds_inter_and_intra_class_relations_scaled_by_tau_squared():
    teacher = _logits([[0.9, 0.1], [0.1, 0.9]])
    student = _logits([[0.9, 0.1], [0.9, 0.1]])
    # Inter (per anchor, over 2 classes): Pearson 1 and -1 -> 1 - 0 = 1. Intra (per class, over
    # the anchors): the student is constant, Pearson 0 -> 1. beta = gamma = 1: 2.
    assert float(dist.DistRelations()(student, teacher, {})) == pytest.approx(2.0, abs=1e-5)
    # Logits twice as large at tau = 2 give the same probabilities, and tau^2 = 4 times the loss.
    doubled = [{"cls_logits": 2 * out["cls_logits"]} for out in (student, teacher)]
    loss = dist.DistRelations(temperature=2.0, beta=0.5, gamma=1.0)
    assert float(loss(*doubled, {})) == pytest.approx(4 * (0.5 + 1.0), abs=1e-4)


def test_dist_is_zero_for_identical_predictions_and_teaches_only_the_student():
    assert dist.DistRelations.anchor_level
    teacher = tf.random.stateless_normal([2, 30, 3], seed=[3, 4])
    student = tf.Variable(tf.random.stateless_normal([2, 30, 3], seed=[5, 6]))
    loss = dist.DistRelations()
    assert float(loss({"cls_logits": teacher}, {"cls_logits": teacher}, {})) == pytest.approx(
        0.0, abs=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(teacher)
        value = loss({"cls_logits": student}, {"cls_logits": teacher}, {})
    student_gradient, teacher_gradient = tape.gradient(value, [student, teacher])
    assert float(tf.reduce_max(tf.abs(student_gradient))) > 0
    assert teacher_gradient is None


# --- all feature losses ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cwd", "fgd"])
def test_feature_loss_is_zero_when_the_student_equals_the_teacher(name):
    features = _features(16)
    loss = _built(_make(name), features, features)
    assert float(loss(features, features, BATCH)) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_loss_gradients_reach_the_student_and_adapters_never_the_teacher(name):
    student_out, teacher_out = _features(8), _features(16, seed=1)
    loss = _built(_make(name), student_out, teacher_out)
    student, teacher = list(student_out["features"].values()), list(
        teacher_out["features"].values())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(student + teacher)
        value = loss(student_out, teacher_out, BATCH)
    assert np.isfinite(float(value)) and float(value) > 0
    for gradient in tape.gradient(value, student):
        assert float(tf.reduce_max(tf.abs(gradient))) > 0
    for layer in loss.adapters:
        gradients = tape.gradient(value, layer.trainable_variables)
        assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients if g is not None), (
            layer.name)
    assert tape.gradient(value, teacher) == [None, None]


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_loss_adapts_channels_only_where_they_differ(name):
    loss = _built(_make(name), _features(8), _features(16))
    adapters = [layer for layer in loss.adapters if "adapter" in layer.name]
    assert [a.name for a in adapters] == [f"{name}_adapter_p3", f"{name}_adapter_p4"]
    assert adapters[0].kernel.shape == (1, 1, 8, 16)
    same = _built(_make(name), _features(16), _features(16))
    assert not [layer for layer in same.adapters if "adapter" in layer.name]


@pytest.mark.parametrize("name", FEATURE_LOSSES)
def test_feature_loss_refuses_levels_of_different_sizes_naming_the_level(name):
    with pytest.raises(ValueError, match=rf"{name}: level 3 is 4x4 in the student but 8x8 in"):
        _make(name).build(_features(8), _features(16, sizes=(8, 2)))


@pytest.mark.parametrize("binding, name, attribute, value", [
    ("cwd.temperature = 4.0", "cwd", "temperature", 4.0),
    ("fgd.lambda_ = 0.25", "fgd", "lambda_", 0.25),
    ("mgd.mask_ratio = 0.45", "mgd", "mask_ratio", 0.45),
    ("dist.gamma = 2.0", "dist", "gamma", 2.0),
])
def test_losses_are_registered_and_configured_through_gin(clean_gin, binding, name, attribute,
                                                          value):
    assert name in kdod.LOSSES.list()
    gin.parse_config(binding)
    assert getattr(kdod.LOSSES.get(name)(), attribute) == value


def test_a_gin_setting_changes_the_loss_value(clean_gin):
    student_out, teacher_out = _features(16), _features(16, seed=1)
    default = _built(cwd.ChannelWiseDistillation(), student_out, teacher_out)
    explicit = _built(cwd.ChannelWiseDistillation(temperature=4.0), student_out, teacher_out)
    gin.parse_config("cwd.temperature = 4.0")  # From here on, the class itself defaults to 4.
    configured = _built(kdod.LOSSES.get("cwd")(), student_out, teacher_out)
    value = float(configured(student_out, teacher_out, {}))
    assert value == pytest.approx(float(explicit(student_out, teacher_out, {})), rel=1e-6)
    assert value != pytest.approx(float(default(student_out, teacher_out, {})), rel=1e-3)
