"""Box-level distillation: teacher-bounded regression and imitation of confident teacher boxes."""

from __future__ import annotations

import tensorflow as tf

from kdod.detection import box_coder
from kdod.detection.losses import giou_loss
from kdod.distill.losses.pseudo_labels import teacher_targets
from kdod.registry import register_loss

MATCHES = ("anchors", "detections")


def bounded_regression_per_anchor(student_reg: tf.Tensor, teacher_reg: tf.Tensor,
                                  box_targets: tf.Tensor, margin: float) -> tf.Tensor:
    """Chen et al.: ||Rs - y||^2 where ||Rs - y||^2 + m > ||Rt - y||^2, else 0. [B, A]."""
    student_error = tf.reduce_sum(tf.square(student_reg - box_targets), axis=-1)
    teacher_error = tf.reduce_sum(tf.square(teacher_reg - box_targets), axis=-1)
    return tf.where(student_error + margin > teacher_error, student_error, 0.0)


@register_loss("bounded_regression")
class BoundedRegression:
    """Teacher-bounded regression loss (Chen et al., NeurIPS 2017), on positive anchors.

    The teacher's box error is an upper bound the student should reach: once the
    student's error falls below the teacher's (by more than `margin`), the anchor adds
    nothing. Compares encoded regressions against the student's matched targets.
    """

    anchor_level = True
    teacher_outputs = ("box_regression",)

    def __init__(self, margin: float = 0.0):
        self.margin = margin

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        targets = batch["targets"]
        per_anchor = bounded_regression_per_anchor(
            tf.cast(student_out["box_regression"], tf.float32),
            tf.cast(teacher_out["box_regression"], tf.float32), targets["box_targets"],
            self.margin)
        positives = targets["box_weights"]
        return tf.reduce_sum(per_anchor * positives) / tf.maximum(tf.reduce_sum(positives), 1.0)


@register_loss("box_imitation")
class BoxImitation:
    """L1 or GIoU between the student's decoded boxes and the teacher's, where it is confident.

    Args:
        form: "l1" (sum over the 4 normalized corner coordinates) or "giou" (1 - GIoU).
        score_threshold: what "confident" means, on the teacher's class probability.
        match: "anchors" compares the two models anchor by anchor, on anchors whose top teacher
            class probability exceeds score_threshold (same anchor layout needed);
            "detections" compares the student's boxes on the anchors matched (IoU >= 0.5, as
            training targets are) to the teacher's detections above score_threshold: it needs
            no shared layout and works with exported teachers, which only give detections.
        max_boxes: with match="detections", the teacher detections kept per image.
    """

    teacher_outputs = ("detections", "cls_logits", "box_regression")

    def __init__(self, form: str = "l1", score_threshold: float = 0.5, match: str = "anchors",
                 max_boxes: int = 32):
        if form not in ("l1", "giou"):
            raise ValueError(f"box_imitation.form must be 'l1' or 'giou', got {form!r}.")
        if match not in MATCHES:
            raise ValueError(f"box_imitation.match must be one of {MATCHES}, got {match!r}.")
        self.form, self.score_threshold, self.match = form, score_threshold, match
        self.max_boxes = max_boxes

    @property
    def anchor_level(self) -> bool:
        return self.match == "anchors"

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        anchors = batch["student_anchors"]
        student = box_coder.decode(tf.cast(student_out["box_regression"], tf.float32), anchors)
        if self.match == "anchors":
            teacher, weights = self._confident_anchor_boxes(teacher_out, anchors)
        else:
            teacher, weights = self._matched_detections(student_out, teacher_out, batch)
        if self.form == "l1":
            per_anchor = tf.reduce_sum(tf.abs(student - teacher), axis=-1)
        else:
            per_anchor = giou_loss(student, teacher)
        return tf.reduce_sum(per_anchor * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def _confident_anchor_boxes(self, teacher_out, anchors) -> tuple[tf.Tensor, tf.Tensor]:
        """The teacher's decoded box on every anchor, weighted 1 where it is confident."""
        teacher = box_coder.decode(tf.cast(teacher_out["box_regression"], tf.float32), anchors)
        probabilities = tf.sigmoid(tf.cast(teacher_out["cls_logits"], tf.float32))
        return teacher, tf.cast(tf.reduce_max(probabilities, axis=-1) > self.score_threshold,
                                tf.float32)

    def _matched_detections(self, student_out, teacher_out, batch) -> tuple[tf.Tensor, tf.Tensor]:
        """Per student anchor, the confident teacher detection it matches, weighted 1 if any."""
        targets = teacher_targets(student_out, teacher_out, batch, self.score_threshold,
                                  self.max_boxes)
        return (box_coder.decode(targets["box_targets"], batch["student_anchors"]),
                targets["box_weights"])
