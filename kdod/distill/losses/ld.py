"""Localization distillation (Zheng et al., CVPR 2022, "Localization Distillation for Dense Object
Detection", arXiv:2102.12252).

Teacher and student both predict each box side (top, left, bottom, right) as a distribution over
n + 1 distances (``DetectorConfig.box_bins = n``, the GFL box head of Li et al. 2020), and the
student's side distributions imitate the teacher's, softened by a temperature T:

    p = softmax(z_T / T), q = softmax(z_S / T)     per anchor and side, over the n + 1 bins
    LD(anchor) = T^2 * mean over the 4 sides of KL(p || q)
    L = mean of LD over the main region + vlr_weight * mean of LD over the VLR

The main distillation region is the label assignment's positive anchors (the student's,
``batch["targets"]["box_weights"]``). The valuable localization region (VLR) reaches past it:
the anchors, not positive, whose best Distance-IoU X with a ground-truth box satisfies
``vlr_alpha * positive_iou <= X < positive_iou`` (the paper's alpha_vl and alpha_pos; alpha_pos
is the matcher's positive IoU, 0.5). The paper distills with T = 10 and weight 0.25 on both
regions, alpha_vl = 0.25.

gin (the teacher's run needs the same box_bins: gin/real/teacher_ld.gin):

    DetectorConfig.box_bins = 16
    DistillerConfig.losses = {"ld": 0.25}
    ld.temperature = 10.0
    ld.vlr = True
    ld.vlr_alpha = 0.25
    ld.vlr_weight = 1.0

Where this differs from the authors' code (HikariTJU/LD; mmdetection's LDHead with
KnowledgeDistillationKLDivLoss): it weighs main-region anchors by the student's classification
score and VLR anchors by their IoU, and averages the KL over the bins (a constant 1 / (n + 1)
that the loss weight absorbs). Here the regions are plain masks and the KL is the KL, as the
paper writes them.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf

from kdod.config import check_number
from kdod.detection import matcher
from kdod.distill.distiller import IncompatibleTeacherError
from kdod.registry import register_loss

BINS_BINDING = "DetectorConfig.box_bins"
SUGGESTED_BINS = 16  # GFL's and LD's n.


def side_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor,
            temperature: float) -> tf.Tensor:
    """T^2 * KL(softmax(t / T) || softmax(s / T)) over the bins: [..., n + 1] -> [...]."""
    log_p = tf.nn.log_softmax(tf.cast(teacher_logits, tf.float32) / temperature, axis=-1)
    log_q = tf.nn.log_softmax(tf.cast(student_logits, tf.float32) / temperature, axis=-1)
    return temperature ** 2 * tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)


def valuable_localization_region(anchors: tf.Tensor, boxes: tf.Tensor, labels: tf.Tensor,
                                 positives: tf.Tensor, vlr_alpha: float,
                                 positive_iou: float) -> tf.Tensor:
    """The VLR mask [B, A] (float 0/1): anchors [A, 4] that are not `positives` [B, A] and whose
    best DIoU with a ground-truth box (boxes [B, M, 4], labels [B, M], -1 pads) lies in
    [vlr_alpha * positive_iou, positive_iou)."""
    diou = matcher.pairwise_diou(tf.convert_to_tensor(anchors, tf.float32)[None], boxes)
    diou = tf.where(tf.convert_to_tensor(labels)[:, None, :] >= 0, diou, -2.0)  # Pads never.
    best = tf.reduce_max(tf.pad(diou, [[0, 0], [0, 0], [0, 1]], constant_values=-2.0), axis=-1)
    in_band = (best >= vlr_alpha * positive_iou) & (best < positive_iou)
    return tf.cast(in_band, tf.float32) * (1.0 - tf.cast(positives, tf.float32))


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """The mean of `values` where `mask` is 1; 0 for an empty mask."""
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def box_bins(outputs: Mapping) -> int:
    """n of a detector's side distributions [B, A, 4, n + 1]; 0 without a distribution head."""
    distribution = outputs.get("box_distribution")
    return 0 if distribution is None else int(distribution.shape[-1]) - 1


def check_same_bins(student_out: Mapping, teacher_out: Mapping) -> None:
    """An IncompatibleTeacherError naming both box_bins and the binding to change, unless both
    models predict side distributions over the same bins."""
    student, teacher = box_bins(student_out), box_bins(teacher_out)
    if student and student == teacher:
        return
    if teacher:
        fix = f"set {BINS_BINDING} = {teacher} in the student's gin (the teacher's value)"
    else:
        fix = (f"train the teacher with {BINS_BINDING} = {student or SUGGESTED_BINS} (as "
               f"gin/real/teacher_ld.gin does) and give the student the same")
    raise IncompatibleTeacherError(
        f"ld distills the box-side distributions, which teacher and student must both predict "
        f"over the same bins ({BINS_BINDING} > 0), but the teacher has {BINS_BINDING} = "
        f"{teacher} and the student {student}: {fix}.")


@register_loss("ld")
class LocalizationDistillation:
    """T^2 * KL between the teacher's and the student's box-side distributions (module docstring).

    Args:
        temperature: T; both models' bin logits are divided by it. The paper uses 10.
        vlr: also distill the valuable localization region.
        vlr_alpha: alpha_vl: the VLR starts at DIoU vlr_alpha * positive_iou.
        positive_iou: alpha_pos, where the VLR ends: the matcher's positive IoU threshold.
        vlr_weight: weight of the VLR term against the main region's.
    """

    anchor_level = True
    teacher_outputs = ("box_distribution",)

    def __init__(self, temperature: float = 10.0, vlr: bool = True, vlr_alpha: float = 0.25,
                 positive_iou: float = 0.5, vlr_weight: float = 1.0):
        check_number("ld.temperature", temperature, above=0)
        check_number("ld.vlr_alpha", vlr_alpha, at_least=0, at_most=1)
        check_number("ld.positive_iou", positive_iou, above=0, at_most=1)
        check_number("ld.vlr_weight", vlr_weight, at_least=0)
        self.temperature, self.vlr, self.vlr_alpha = temperature, bool(vlr), vlr_alpha
        self.positive_iou, self.vlr_weight = positive_iou, vlr_weight

    def build(self, student_out, teacher_out) -> None:
        """Refuses, before training, models whose side distributions differ."""
        check_same_bins(student_out, teacher_out)

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        check_same_bins(student_out, teacher_out)
        teacher = tf.stop_gradient(teacher_out["box_distribution"])  # A target, never trained.
        per_anchor = tf.reduce_mean(
            side_kl(teacher, student_out["box_distribution"], self.temperature), axis=-1)
        positives = batch["targets"]["box_weights"]
        loss = masked_mean(per_anchor, positives)
        if self.vlr:
            region = valuable_localization_region(batch["student_anchors"], batch["boxes"],
                                                  batch["labels"], positives, self.vlr_alpha,
                                                  self.positive_iou)
            loss += self.vlr_weight * masked_mean(per_anchor, region)
        return loss
