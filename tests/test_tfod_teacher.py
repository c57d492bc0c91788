"""A TF OD API SavedModel as a foreign teacher: loaded by the plugin, distilled from, refused
where it cannot serve."""

import gin
import numpy as np
import pytest
import tensorflow as tf
import test_export
from conftest import TINY_GIN as TINY

from kdod import checkpoints, config, exported, train_lib, train_step
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import Distiller, IncompatibleTeacherError
from kdod.distill.teacher import TeacherNotFoundError, load_teacher
from kdod_plugins.tfod_teacher import TfodSavedModelTeacher

OVERFIT = test_export.OVERFIT
tiny_export = test_export.tiny_export  # The session's trained, exported teacher.


def _student():
    gin.bind_parameter("tiny_cnn.width", 4)
    return Detector(DetectorConfig(backbone="tiny_cnn", neck="fpn_lite", image_size=128,
                                   head_convs=1), name="student")


def _batch(data_dir):
    config.parse_gin([TINY], [f"input_pipeline.data_dir = '{data_dir}'", *OVERFIT[:2]])
    with gin.config_scope("eval"):
        return next(iter(input_pipeline(training=False, image_size=128)))


def test_exported_teacher_gives_detections_in_the_students_frame(tiny_export, tiny_data_dir,
                                                                 clean_gin):
    teacher = load_teacher(tiny_export / "export" / "saved_model")
    assert isinstance(teacher, TfodSavedModelTeacher)
    batch = _batch(tiny_data_dir)
    detections = teacher(batch["image"])["detections"]
    assert detections["classes"].dtype == tf.int32
    assert detections["num_detections"].dtype == tf.int32
    assert int(tf.reduce_min(detections["classes"])) == 0  # kdod labels are 0-based.
    # Where it is confident, its best box overlaps a true plate: the frames agree.
    confident = [i for i in range(len(batch["image"]))
                 if batch["num_boxes"][i] and float(detections["scores"][i, 0]) > 0.5]
    assert confident
    for i in confident:
        best, truth = detections["boxes"][i, 0], batch["boxes"][i, :int(batch["num_boxes"][i])]
        overlap = tf.minimum(best[2:], truth[:, 2:]) - tf.maximum(best[:2], truth[:, :2])
        assert bool(tf.reduce_any(tf.reduce_all(overlap > 0, axis=-1)))


def test_distilling_from_the_exported_teacher_trains_the_student(tiny_export, tiny_data_dir,
                                                                 clean_gin):
    teacher = load_teacher(tiny_export / "export" / "saved_model")
    batch = _batch(tiny_data_dir)
    gin.bind_parameter("pseudo_labels.score_threshold", 0.3)
    gin.bind_parameter("box_imitation.match", "detections")
    gin.bind_parameter("box_imitation.score_threshold", 0.3)
    distiller = Distiller(_student(), teacher, {"pseudo_labels": 1.0, "box_imitation": 1.0})
    distiller.compile(optimizer=train_lib.make_optimizer(total_steps=10, warmup_steps=0))
    before = [v.numpy().copy() for v in distiller.student.trainable_variables]
    terms = train_step.train_batch(distiller, batch)
    assert float(terms["pseudo_labels"]) > 0 and float(terms["box_imitation"]) > 0
    assert any(not np.array_equal(a, v.numpy())
               for a, v in zip(before, distiller.student.trainable_variables))
    # The pseudo-label term alone moves the student: the teacher's detections are targets.
    with tf.GradientTape() as tape:
        outputs = distiller.student(batch["image"], training=True)
        loss = distiller.loss_terms(batch, outputs)["pseudo_labels"]
    gradients = tape.gradient(loss, distiller.student.trainable_variables)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in gradients if g is not None)


def test_gin_distiller_detects_an_exported_teacher_dir(tiny_export, tiny_data_dir, tmp_path,
                                                       clean_gin):
    config.parse_gin([TINY], [
        f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.steps = 4",
        "train.checkpoint_every = 4", "train.summary_images = 0", "tiny_cnn.width = 4",
        "train.distillation = @DistillerConfig()",
        f"DistillerConfig.teacher_dir = '{tiny_export / 'export'}'",
        "DistillerConfig.losses = {'pseudo_labels': 1.0}", "pseudo_labels.score_threshold = 0.3"])
    model = train_lib.train(str(tmp_path))
    assert isinstance(model.teacher, TfodSavedModelTeacher)
    assert np.isfinite(model.history.history["pseudo_labels"]).all()
    assert (tmp_path / checkpoints.DETECTOR_WEIGHTS).is_file()


def test_losses_that_need_head_outputs_are_refused_with_the_reason(tiny_export, clean_gin):
    teacher = load_teacher(tiny_export / "export")
    with pytest.raises(IncompatibleTeacherError, match=r"kl_logits.*only gives detections"):
        Distiller(_student(), teacher, {"kl_logits": 1.0})
    with pytest.raises(IncompatibleTeacherError, match=r"'features'.*pseudo_labels"):
        Distiller(_student(), teacher, {"feature_imitation": 1.0})


def test_wrong_teacher_paths_give_clear_errors(tmp_path):
    with pytest.raises(TeacherNotFoundError, match="or an exported SavedModel"):
        load_teacher(tmp_path / "missing")
    module = tf.Module()
    module.f = tf.function(lambda images: {"scores": tf.reduce_mean(images, [1, 2])},
                           input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "other"), signatures={"serving_default": module.f})
    with pytest.raises(exported.ExportError, match=r"input 'input_tensor' uint8.*detection_boxes"):
        load_teacher(tmp_path / "other")
