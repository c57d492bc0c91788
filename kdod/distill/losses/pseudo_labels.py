"""Pseudo-labels: the teacher's confident detections become extra targets for the student.

The one loss that needs no shared anchor layout: the teacher's detections are boxes, which
any student can be trained on. It also works with teachers that only exist as exported
models, which provide ``teacher_out["detections"]`` instead of raw head outputs.
"""

from __future__ import annotations

import tensorflow as tf

from kdod.detection import losses, matcher
from kdod.detection.postprocess import postprocess
from kdod.registry import register_loss


def teacher_pseudo_boxes(teacher_out, teacher_anchors: tf.Tensor, score_threshold: float,
                         max_boxes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes [B, D, 4] and labels [B, D] (-1 where not a confident detection) of the teacher."""
    detections = teacher_out.get("detections")
    if detections is None:
        detections = postprocess(teacher_out["cls_logits"], teacher_out["box_regression"],
                                 teacher_anchors, score_threshold=score_threshold,
                                 max_detections=max_boxes)
    count = tf.shape(detections["scores"])[1]
    valid = ((tf.range(count)[None, :] < detections["num_detections"][:, None])
             & (detections["scores"] >= score_threshold))
    labels = tf.where(valid, tf.cast(detections["classes"], tf.int32), -1)
    return tf.stop_gradient(detections["boxes"]), labels


def teacher_targets(student_out, teacher_out, batch, score_threshold: float,
                    max_boxes: int) -> dict[str, tf.Tensor]:
    """The teacher's confident detections as training targets on the student's anchors."""
    boxes, labels = teacher_pseudo_boxes(teacher_out, batch["teacher_anchors"], score_threshold,
                                         max_boxes)
    return matcher.encode_targets(batch["student_anchors"], boxes, labels,
                                  student_out["cls_logits"].shape[-1])


@register_loss("pseudo_labels")
class PseudoLabels:
    """The student's detection loss against the teacher's detections above `score_threshold`."""

    # An exported teacher gives detections; a kdod one the head outputs they are decoded from.
    teacher_outputs = ("detections", "cls_logits", "box_regression")

    def __init__(self, score_threshold: float = 0.5, max_boxes: int = 32):
        self.score_threshold, self.max_boxes = score_threshold, max_boxes

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        targets = teacher_targets(student_out, teacher_out, batch, self.score_threshold,
                                  self.max_boxes)
        return losses.detection_loss(student_out, targets, batch["student_anchors"])["total"]
