"""The Distiller: what trains, what stays frozen, what is saved, what is refused."""

import gin
import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_GIN as TINY
from conftest import tiny_detector as _detector
from conftest import two_image_batch as _batch

from kdod import checkpoints, config, train_lib, train_step
from kdod.detection.anchors import AnchorConfig
from kdod.distill.distiller import Distiller, IncompatibleTeacherError
from kdod.distill.teacher import TeacherNotFoundError, load_teacher


@pytest.fixture
def distiller(clean_gin):
    config.parse_gin([], ["fpn_lite.filters = 16"])
    student = _detector(4, "student")
    config.parse_gin([], ["fpn_lite.filters = 32"])
    teacher = _detector(8, "teacher")
    teacher.trainable = False
    gin.bind_parameter("feature_imitation.mask", "none")  # Every level gets a gradient.
    model = Distiller(student, teacher, {"kl_logits": 1.0, "feature_imitation": 1.0,
                                         "bounded_regression": 1.0, "box_imitation": 1.0,
                                         "pseudo_labels": 1.0})
    model.compile(optimizer=train_lib.make_optimizer(total_steps=10, warmup_steps=0))
    return model


def test_gradients_reach_student_and_adapters_but_not_the_teacher(distiller):
    adapter_ids = {id(v) for layer in distiller.adapters for v in layer.trainable_variables}
    assert adapter_ids, "16 -> 32 channels needs adapters"
    trainable = {id(v) for v in distiller.trainable_variables}
    assert adapter_ids <= trainable
    assert not {id(v) for v in distiller.teacher.variables} & trainable

    teacher_before = [v.numpy().copy() for v in distiller.teacher.variables]
    student_before = [v.numpy().copy() for v in distiller.student.trainable_variables]
    adapter_before = [v.numpy().copy() for a in distiller.adapters for v in a.trainable_variables]
    logs = train_step.train_batch(distiller, _batch())
    assert np.isfinite(float(logs["total"]))
    assert all(np.array_equal(a, v.numpy())
               for a, v in zip(teacher_before, distiller.teacher.variables))
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(student_before, distiller.student.trainable_variables))
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(
        adapter_before, [v for a in distiller.adapters for v in a.trainable_variables]))


def test_saved_student_has_no_adapters_and_loads_without_the_distiller(distiller, tmp_path):
    train_step.train_batch(distiller, _batch())
    path = checkpoints.save_detector(distiller.exported_detector(), tmp_path)
    with h5py.File(path) as weights:
        names = []
        weights.visit(names.append)
    assert names and not [n for n in names if "adapter" in n or "optimizer" in n]
    config.parse_gin([], ["fpn_lite.filters = 16"])
    plain = checkpoints.load_detector(_detector(4, "plain"), tmp_path)
    images = _batch()["image"]
    np.testing.assert_allclose(plain(images)["cls_logits"],
                               distiller.student(images)["cls_logits"], atol=1e-5)


def test_anchor_level_losses_refuse_different_layouts_and_name_them(clean_gin):
    student = _detector(4, "student")
    teacher = _detector(4, "teacher", AnchorConfig(min_level=3, max_level=5,
                                                   aspect_ratios=(1.0, 3.0)))
    with pytest.raises(IncompatibleTeacherError, match=r"kl_logits.*aspect_ratios"):
        Distiller(student, teacher, {"kl_logits": 1.0})
    Distiller(student, teacher, {"pseudo_labels": 1.0})  # Box-level targets work across layouts.


def test_missing_teacher_error_gives_the_command_that_trains_one(tmp_path):
    with pytest.raises(TeacherNotFoundError, match="python -m kdod.train --gin_file="):
        load_teacher(tmp_path / "no_teacher")


def test_distillation_run_from_gin_with_a_trained_teacher(tiny_data_dir, tmp_path, clean_gin):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    data = f"input_pipeline.data_dir = '{tiny_data_dir}'"
    config.parse_gin([TINY], [data, "train.steps = 20", "train.summary_images = 0"])
    train_lib.train(str(teacher_dir))
    teacher_weights = (teacher_dir / checkpoints.DETECTOR_WEIGHTS).read_bytes()

    gin.clear_config()
    config.parse_gin([TINY], [
        data, "train.steps = 20", "train.summary_images = 0", "tiny_cnn.width = 4",
        "train.distillation = @DistillerConfig()", f"DistillerConfig.teacher_dir = '{teacher_dir}'",
        "DistillerConfig.losses = {'kl_logits': 1.0, 'feature_imitation': 0.5}",
        "kl_logits.temperature = 3.0"])
    model = train_lib.train(str(student_dir))
    assert isinstance(model, Distiller)
    assert model.loss_fns[0].temperature == 3.0
    assert model.teacher.config.backbone == "tiny_cnn"
    # The teacher kept its own width (8) although the student's config says 4.
    assert model.teacher.network.get_layer("tiny_cnn").output[8].shape[-1] == 32
    assert model.student.network.get_layer("tiny_cnn").output[8].shape[-1] == 16
    assert (student_dir / checkpoints.DETECTOR_WEIGHTS).is_file()
    assert (teacher_dir / checkpoints.DETECTOR_WEIGHTS).read_bytes() == teacher_weights
    assert "kl_logits" in model.history.history and "feature_imitation" in model.history.history


def _twice_the_size_teacher():
    """A teacher at 128 px with levels 4-6: the anchors of a 64-px student with levels 3-5."""
    return _detector(8, "teacher", AnchorConfig(min_level=4, max_level=6, scales_per_octave=1),
                     image_size=128)


def test_a_teacher_at_twice_the_size_one_level_up_is_compared_level_by_level(clean_gin):
    gin.bind_parameter("feature_imitation.mask", "none")
    model = Distiller(_detector(4, "student"), _twice_the_size_teacher(),
                      {"kl_logits": 1.0, "feature_imitation": 1.0})
    assert model.teacher_image_size == 128
    batch = _batch()
    teacher_image = tf.image.resize(batch["image"], [128, 128])
    features = model.teacher_outputs(teacher_image)["features"]
    student_features = model.student(batch["image"])["features"]
    assert sorted(features) == sorted(student_features) == [3, 4, 5]
    assert all(features[lv].shape[1:3] == student_features[lv].shape[1:3] for lv in features)
    outputs = model.student(batch["image"])
    sharp = model.loss_terms({**batch, "teacher_image": teacher_image}, outputs)
    noise = tf.random.uniform([2, 128, 128, 3], 0, 255, seed=2)
    other = model.loss_terms({**batch, "teacher_image": noise}, outputs)
    assert float(sharp["kl_logits"]) != float(other["kl_logits"])  # It reads the teacher's view.
    before = [v.numpy().copy() for v in model.student.trainable_variables]
    model.compile(optimizer=train_lib.make_optimizer(total_steps=10, warmup_steps=0))
    logs = train_step.train_batch(model, {**batch, "teacher_image": teacher_image})
    assert np.isfinite(float(logs["total"]))
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(before, model.student.trainable_variables))


def test_a_teacher_at_twice_the_size_on_the_same_levels_is_refused_naming_the_levels(clean_gin):
    teacher = _detector(8, "teacher", AnchorConfig(min_level=3, max_level=5, scales_per_octave=1),
                        image_size=128)
    with pytest.raises(IncompatibleTeacherError, match=r"min_level: 3 vs 4.*levels must be \+1"):
        Distiller(_detector(4, "student"), teacher, {"kl_logits": 1.0})


def test_distillation_from_a_teacher_at_twice_the_size_trains_on_its_own_view(
        tiny_data_dir, tmp_path, clean_gin):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    data = [f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.summary_images = 0",
            "input_pipeline.batch_size = 4"]
    config.parse_gin([TINY], [*data, "train.steps = 2", "AnchorConfig.min_level = 4",
                              "AnchorConfig.max_level = 6"])
    train_lib.train(str(teacher_dir))
    gin.clear_config()
    config.parse_gin([TINY], [
        *data, "train.steps = 4", "DetectorConfig.image_size = 64",
        "train.distillation = @DistillerConfig()", f"DistillerConfig.teacher_dir = '{teacher_dir}'",
        "DistillerConfig.losses = {'kl_logits': 1.0, 'feature_imitation': 1.0}"])
    model = train_lib.train(str(student_dir))
    assert model.teacher.image_size == 128 and model.student.image_size == 64
    assert np.isfinite(model.history.history["kl_logits"][-1])
    assert (student_dir / checkpoints.DETECTOR_WEIGHTS).is_file()
