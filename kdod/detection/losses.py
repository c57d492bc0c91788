"""Detection losses: sigmoid focal loss, Huber and GIoU box losses, the distribution focal
loss, and their sum.

``detection_loss`` is the task loss of teacher and student: focal loss over all anchors that
are not ignored plus a box loss over positive anchors, both divided by the number of positive
anchors in the batch, as RetinaNet. A detector with a distribution box head
(``DetectorConfig.box_bins``) may add GFL's distribution focal loss:

    detection_loss.dfl_weight = 0.25   # GFL's and LD's weight
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import gin
import tensorflow as tf

from kdod.config import ConfigError, check_number
from kdod.detection import box_coder

BOX_LOSSES = ("huber", "giou")


def sigmoid_focal_loss(targets: tf.Tensor, logits: tf.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> tf.Tensor:
    """Per-element focal loss [..., C] (Lin et al. 2017) from logits.

    FL = alpha_t * (1 - p_t)**gamma * BCE, with p_t = p for targets 1 and 1 - p for targets 0.
    BCE comes from tf.nn.sigmoid_cross_entropy_with_logits, which is stable for any logit.
    """
    logits = tf.cast(logits, tf.float32)
    targets = tf.cast(targets, tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits)
    p = tf.sigmoid(logits)
    p_t = targets * p + (1 - targets) * (1 - p)
    alpha_t = targets * alpha + (1 - targets) * (1 - alpha)
    return alpha_t * tf.pow(1 - p_t, gamma) * cross_entropy


def huber_box_loss(box_targets: tf.Tensor, box_pred: tf.Tensor, delta: float = 0.1) -> tf.Tensor:
    """Huber loss on encoded boxes [B, A, 4], summed over the 4 coordinates -> [B, A]."""
    error = tf.abs(tf.cast(box_pred, tf.float32) - tf.cast(box_targets, tf.float32))
    quadratic = tf.minimum(error, delta)
    linear = error - quadratic
    return tf.reduce_sum(0.5 * tf.square(quadratic) + delta * linear, axis=-1)


def giou_loss(pred_boxes: tf.Tensor, target_boxes: tf.Tensor) -> tf.Tensor:
    """1 - generalized IoU (Rezatofighi et al. 2019) of corner boxes [..., 4] -> [...]."""
    pred_boxes = tf.cast(pred_boxes, tf.float32)
    target_boxes = tf.cast(target_boxes, tf.float32)
    p_ymin, p_xmin, p_ymax, p_xmax = tf.unstack(pred_boxes, 4, axis=-1)
    t_ymin, t_xmin, t_ymax, t_xmax = tf.unstack(target_boxes, 4, axis=-1)
    pred_area = tf.maximum(p_ymax - p_ymin, 0.0) * tf.maximum(p_xmax - p_xmin, 0.0)
    target_area = tf.maximum(t_ymax - t_ymin, 0.0) * tf.maximum(t_xmax - t_xmin, 0.0)
    intersection = (tf.maximum(tf.minimum(p_ymax, t_ymax) - tf.maximum(p_ymin, t_ymin), 0.0)
                    * tf.maximum(tf.minimum(p_xmax, t_xmax) - tf.maximum(p_xmin, t_xmin), 0.0))
    union = pred_area + target_area - intersection
    enclosing = ((tf.maximum(p_ymax, t_ymax) - tf.minimum(p_ymin, t_ymin))
                 * (tf.maximum(p_xmax, t_xmax) - tf.minimum(p_xmin, t_xmin)))
    iou = tf.math.divide_no_nan(intersection, union)
    giou = iou - tf.math.divide_no_nan(enclosing - union, enclosing)
    return 1.0 - giou


def distribution_focal_loss(logits: tf.Tensor, distances: tf.Tensor) -> tf.Tensor:
    """GFL's DFL (Li et al., NeurIPS 2020, Eq. 6) of side logits [..., n + 1] -> [...].

    The target distance y lies between two bin distances d_i <= y <= d_(i+1); the loss is the
    cross-entropy against the two-hot target that puts (d_(i+1) - y) / (d_(i+1) - d_i) on bin i
    and the rest on bin i + 1 (so its expectation is y). Targets are clipped into the bins.
    """
    bins = logits.shape[-1] - 1
    position = tf.clip_by_value(tf.cast(distances, tf.float32) / box_coder.MAX_SIDE_DISTANCE
                                * bins, 0.0, bins - 1e-3)  # In bins; bin i + 1 always exists.
    left = tf.floor(position)
    right_share = position - left
    left = tf.cast(left, tf.int32)
    target = (tf.one_hot(left, bins + 1) * (1 - right_share)[..., None]
              + tf.one_hot(left + 1, bins + 1) * right_share[..., None])
    return -tf.reduce_sum(target * tf.nn.log_softmax(tf.cast(logits, tf.float32)), axis=-1)


@gin.configurable
def detection_loss(outputs: Mapping[str, tf.Tensor], targets: Mapping[str, tf.Tensor],
                   anchors: tf.Tensor, box_loss: str = "huber", box_weight: float = 1.0,
                   focal_alpha: float = 0.25, focal_gamma: float = 2.0,
                   huber_delta: float = 1.0,
                   scale_factors: Sequence[float] = box_coder.DEFAULT_SCALE_FACTORS,
                   dfl_weight: float = 0.0) -> dict[str, tf.Tensor]:
    """Focal + box loss of a Detector's `outputs` against `encode_targets` results.

    box_loss "huber" compares encoded boxes; "giou" decodes predictions and targets against
    `anchors` and compares corner boxes. The default huber_delta=1.0 with box_weight=1.0 is the
    TF OD API's SSD / RetinaNet setting (weighted smooth L1, delta 1) for the 10, 10, 5, 5
    coder. dfl_weight > 0 adds dfl_loss, GFL's distribution focal loss of the positive
    anchors' side distributions (mean over the 4 sides; needs DetectorConfig.box_bins > 0).
    Returns scalars cls_loss, box_loss (already times box_weight), dfl_loss (times
    dfl_weight, when dfl_weight > 0) and total.
    """
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}.")
    normalizer = tf.maximum(tf.reduce_sum(targets["num_positives"]), 1.0)
    focal = sigmoid_focal_loss(targets["cls_targets"], outputs["cls_logits"], focal_alpha,
                               focal_gamma)
    cls_loss = tf.reduce_sum(focal * targets["cls_weights"][..., None]) / normalizer
    per_anchor = _box_loss_per_anchor(outputs["box_regression"], targets["box_targets"],
                                      anchors, box_loss, huber_delta, scale_factors)
    box = box_weight * tf.reduce_sum(per_anchor * targets["box_weights"]) / normalizer
    terms = {"cls_loss": cls_loss, "box_loss": box, "total": cls_loss + box}
    check_number("detection_loss.dfl_weight", dfl_weight, at_least=0)
    if dfl_weight:
        dfl = _dfl_per_anchor(outputs, targets["box_targets"], anchors, scale_factors)
        terms["dfl_loss"] = dfl_weight * tf.reduce_sum(dfl * targets["box_weights"]) / normalizer
        terms["total"] += terms["dfl_loss"]
    return terms


def _dfl_per_anchor(outputs: Mapping[str, tf.Tensor], box_targets: tf.Tensor,
                    anchors: tf.Tensor, scale_factors: Sequence[float]) -> tf.Tensor:
    """DFL [B, A] of the side distributions against the target boxes, mean over the sides."""
    if "box_distribution" not in outputs:
        raise ConfigError("detection_loss.dfl_weight > 0 needs a distribution box head: set "
                          "DetectorConfig.box_bins (GFL uses 16), or detection_loss.dfl_weight "
                          "= 0.0.")
    target_boxes = box_coder.decode(box_targets, anchors, scale_factors)
    distances = box_coder.side_distances(target_boxes, anchors)
    return tf.reduce_mean(distribution_focal_loss(outputs["box_distribution"], distances), -1)


def _box_loss_per_anchor(box_regression: tf.Tensor, box_targets: tf.Tensor, anchors: tf.Tensor,
                         box_loss: str, huber_delta: float,
                         scale_factors: Sequence[float]) -> tf.Tensor:
    if box_loss == "huber":
        return huber_box_loss(box_targets, box_regression, huber_delta)
    pred_boxes = box_coder.decode(tf.cast(box_regression, tf.float32), anchors, scale_factors)
    target_boxes = box_coder.decode(box_targets, anchors, scale_factors)
    return giou_loss(pred_boxes, target_boxes)
