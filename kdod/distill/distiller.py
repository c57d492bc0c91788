"""The Distiller: a frozen teacher, a trained student, and the distillation losses.

    loss = student detection loss + sum_i weight_i * distill_loss_i(student_out, teacher_out, batch)

gin:
    train.distillation = @DistillerConfig()
    DistillerConfig.teacher_dir = "runs/teacher_small"
    DistillerConfig.losses = {"kl_logits": 1.0, "feature_imitation": 0.5}
    kl_logits.temperature = 2.0

A registered loss is a class (or a plain function) called as
``loss(student_out, teacher_out, batch) -> scalar``. A class may also define
``build(student_out, teacher_out)``, called once with real outputs, creating
trainable adapters in ``self.adapters`` (trained with the student, never exported),
and ``anchor_level = True`` when it compares the two models anchor by anchor, and
``teacher_outputs``, the teacher's outputs it reads (what a teacher cache stores for it; a loss
without it gets them all).
The batch the losses see also holds ``targets`` (the student's matched targets),
``student_anchors`` and ``teacher_anchors``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping

import gin
import keras
import tensorflow as tf

from kdod import registry, train_step
from kdod.config import ConfigError, check_number
from kdod.data import cache
from kdod.detection import anchors as anchors_lib
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.teacher import load_teacher
from kdod.errors import KdodError


class IncompatibleTeacherError(KdodError):
    """An anchor- or feature-level loss was asked for between mismatched models."""


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DistillerConfig:
    """What `train` distills from (gin: ``train.distillation = @DistillerConfig()``).

    Attributes:
        teacher_dir: a trained kdod run, or an exported model a teacher plugin loads.
        losses: {registered loss name: weight}, e.g. ``{"kl_logits": 1.0}``.
        teacher_cache: a folder of `python -m kdod.cache_teacher` for this teacher and these
            losses: training reads its examples and teacher outputs instead of running the
            teacher (kdod.data.cache).
    """

    teacher_dir: str
    losses: Mapping[str, float]
    teacher_cache: str | None = None

    def __post_init__(self):
        if not isinstance(self.losses, Mapping) or not self.losses:
            raise ConfigError("DistillerConfig.losses must map loss names to weights, e.g. "
                              f"{{'kl_logits': 1.0}}; got {self.losses!r}. To train without "
                              "distillation, leave train.distillation unset.")
        for name, weight in self.losses.items():
            check_number(f"DistillerConfig.losses[{name!r}]", weight, at_least=0)


class Distiller(keras.Model):
    """Trains `student` against a frozen `teacher` with weighted distillation losses."""

    def __init__(self, student: Detector, teacher, losses: Mapping[str, float],
                 reads_cache: bool = False, **kwargs):
        """`reads_cache`: batches hold the teacher's outputs (kdod.data.cache), so the
        teacher never runs in training."""
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.image_size = student.image_size
        self.loss_names = list(losses)
        self.loss_weights_by_name = dict(losses)
        self.loss_fns = [_instantiate(registry.LOSSES.get(name)) for name in losses]
        self.reads_cache = reads_cache
        _check_anchor_layouts(self.loss_names, self.loss_fns, student, teacher)
        self.adapters = self._build_losses()

    def _build_losses(self) -> list[keras.layers.Layer]:
        """Lets each loss see real outputs once, to build adapters of the right shapes, and
        records which teacher outputs each loss reads (`outputs_needed`)."""
        images = tf.zeros([1, self.image_size, self.image_size, 3], tf.uint8)
        student_out = self.student(images)
        teacher_out = self.teacher_outputs(images)
        self.outputs_needed = cache.outputs_needed(self.loss_names, self.loss_fns, teacher_out)
        adapters = []
        for loss in self.loss_fns:
            if hasattr(loss, "build"):
                loss.build(student_out, teacher_out)
            adapters.extend(getattr(loss, "adapters", []))
        return adapters

    @property
    def teacher_image_size(self) -> int | None:
        """The teacher's own input size where it is not the student's (None: the same, or an
        exported teacher, which resizes its input itself). Training pipelines then give the
        teacher its own view of each example ("teacher_image")."""
        size = self.teacher.image_size
        return None if size in (None, self.image_size) else size

    def teacher_outputs(self, images: tf.Tensor) -> dict:
        """The teacher in inference mode on `images`, resized to its input size if they are not
        (a teacher_image is; a resized student image has lost the detail the teacher's size is
        for). A teacher at 2**k times the student's size with levels k above the student's
        (anchors.level_shift) has its feature levels renamed to the student's they match."""
        size = self.teacher_image_size
        if size and images.shape[1] != size:
            images = tf.image.resize(tf.cast(images, tf.float32), [size, size])
        outputs = self.teacher(images, training=False)
        shift = size and anchors_lib.level_shift(size, self.image_size)
        if shift and "features" in outputs:
            outputs = {**outputs, "features": {level - shift: features for level, features
                                               in outputs["features"].items()}}
        return tf.nest.map_structure(tf.stop_gradient, outputs)

    def call(self, images, training: bool = False) -> dict:
        return self.student(images, training=training)

    def exported_detector(self) -> Detector:
        """What is exported and evaluated: the student alone."""
        return self.student

    def loss_terms(self, batch: Mapping[str, tf.Tensor], outputs: Mapping) -> dict[str, tf.Tensor]:
        targets = self.student.targets(batch)
        terms = self.student.loss_terms(batch, outputs, targets)
        teacher_out = (cache.teacher_outputs(batch) if self.reads_cache
                       else self.teacher_outputs(batch.get("teacher_image", batch["image"])))
        loss_batch = {**batch, "targets": targets, "student_anchors": self.student.anchors,
                      "teacher_anchors": self.teacher.anchors}
        total = terms["total"]
        for name, loss in zip(self.loss_names, self.loss_fns):
            value = loss(outputs, teacher_out, loss_batch)
            terms[name] = value
            total += self.loss_weights_by_name[name] * value
        return {**terms, "detection_loss": terms["total"], "total": total}

    def train_step(self, batch):
        return train_step.train_batch(self, batch)  # The step shared with tf.distribute loops.

    def detect(self, images) -> dict[str, tf.Tensor]:
        return self.student.detect(images)


def _instantiate(component: Callable) -> Callable:
    """Classes are instantiated (gin supplies their settings); functions are used as they are."""
    return component() if inspect.isclass(component) else component


ACROSS_LAYOUTS = ("the pseudo_labels loss, or box_imitation with box_imitation.match = "
                  "'detections', which work on detections")


def _check_anchor_layouts(names, losses, student: Detector, teacher) -> None:
    anchor_level = [n for n, loss in zip(names, losses) if getattr(loss, "anchor_level", False)]
    if not anchor_level:
        return
    if teacher.anchors is None:  # An exported teacher: detections only.
        raise IncompatibleTeacherError(
            f"{', '.join(anchor_level)} compare teacher and student anchor by anchor, but the "
            f"teacher is an exported model that only gives detections. Use {ACROSS_LAYOUTS}.")
    differences = anchors_lib.describe_differences(
        teacher.config.anchor_config, student.config.anchor_config, teacher.image_size,
        student.image_size)
    if teacher.num_classes != student.num_classes:
        differences.append(f"num_classes: {teacher.num_classes} vs {student.num_classes}")
    if differences:
        raise IncompatibleTeacherError(
            f"{', '.join(anchor_level)} compare teacher and student anchor by anchor, but their "
            f"anchor layouts differ (teacher vs student): {'; '.join(differences)}. Use the same "
            f"AnchorConfig and image size, or {ACROSS_LAYOUTS}.")


def build_distiller(config: DistillerConfig) -> Distiller:
    """The Distiller of `config`: its teacher loaded, the student from gin's DetectorConfig.

    With `config.teacher_cache` it reads the teacher's outputs from the batches, once the cache
    is found to be of this teacher, image size and losses (a CacheMismatchError otherwise)."""
    distiller = Distiller(Detector(DetectorConfig(), name="student"),
                          load_teacher(config.teacher_dir), config.losses,
                          reads_cache=config.teacher_cache is not None)
    if config.teacher_cache is not None:
        cache.check_matches(config.teacher_cache, expected_manifest(config, distiller))
    return distiller


def expected_manifest(config: DistillerConfig, distiller: Distiller) -> dict:
    """What a teacher cache for `distiller` (built from `config`) must record."""
    return cache.expected_manifest(config.teacher_dir, distiller.loss_names,
                                   distiller.outputs_needed, distiller.image_size)
