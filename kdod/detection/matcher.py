"""IoU matching of anchors to ground-truth boxes, and the training targets it defines.

A match value per (image, anchor): ``>= 0`` is the index of the matched ground-truth box,
``NEGATIVE`` (-1) is background, ``IGNORED`` (-2) lies between the thresholds and takes no
part in the losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from kdod.detection import box_coder

NEGATIVE = -1
IGNORED = -2


def pairwise_iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """IoU [..., N, M] of boxes a [..., N, 4] and b [..., M, 4]; leading dims broadcast."""
    a = tf.convert_to_tensor(a, tf.float32)[..., :, None, :]
    b = tf.convert_to_tensor(b, tf.float32)[..., None, :, :]
    ymin = tf.maximum(a[..., 0], b[..., 0])
    xmin = tf.maximum(a[..., 1], b[..., 1])
    ymax = tf.minimum(a[..., 2], b[..., 2])
    xmax = tf.minimum(a[..., 3], b[..., 3])
    intersection = tf.maximum(ymax - ymin, 0.0) * tf.maximum(xmax - xmin, 0.0)
    union = _area(a) + _area(b) - intersection
    return tf.math.divide_no_nan(intersection, union)


def pairwise_diou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Distance-IoU [..., N, M] (Zheng et al., AAAI 2020): IoU - rho^2 / c^2, rho the distance
    between the box centres, c the diagonal of the smallest box enclosing both."""
    iou = pairwise_iou(a, b)
    a = tf.convert_to_tensor(a, tf.float32)[..., :, None, :]
    b = tf.convert_to_tensor(b, tf.float32)[..., None, :, :]
    centre_distance = (tf.square((a[..., 0] + a[..., 2] - b[..., 0] - b[..., 2]) / 2)
                       + tf.square((a[..., 1] + a[..., 3] - b[..., 1] - b[..., 3]) / 2))
    diagonal = (tf.square(tf.maximum(a[..., 2], b[..., 2]) - tf.minimum(a[..., 0], b[..., 0]))
                + tf.square(tf.maximum(a[..., 3], b[..., 3]) - tf.minimum(a[..., 1], b[..., 1])))
    return iou - tf.math.divide_no_nan(centre_distance, diagonal)


def _area(boxes: tf.Tensor) -> tf.Tensor:
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0)


def match(anchors: tf.Tensor, gt_boxes: tf.Tensor, gt_valid: tf.Tensor,
          positive_iou: float = 0.5, negative_iou: float = 0.4,
          force_match: bool = True) -> tf.Tensor:
    """Matches anchors [A, 4] to ground truth [B, M, 4] (valid where gt_valid [B, M]).

    An anchor whose best IoU is >= positive_iou matches that box, one below negative_iou is
    background, one in between is ignored. With force_match every valid box that overlaps
    some anchor also claims its best anchor, so tiny plates below the threshold still train
    (RetinaNet; the TF OD API's force_match_for_each_row). Returns int32 [B, A].
    """
    if negative_iou > positive_iou:
        raise ValueError(f"negative_iou ({negative_iou}) must be <= positive_iou "
                         f"({positive_iou}).")
    gt_valid = tf.convert_to_tensor(gt_valid, tf.bool)
    iou = pairwise_iou(anchors[None], gt_boxes)  # [B, A, M]
    # One extra invalid box keeps max / argmax over boxes defined when a batch has none (M = 0).
    gt_valid = tf.pad(gt_valid, [[0, 0], [0, 1]], constant_values=False)
    iou = tf.pad(iou, [[0, 0], [0, 0], [0, 1]])
    iou = tf.where(gt_valid[:, None, :], iou, -1.0)  # Padding never wins a match.
    best_iou = tf.reduce_max(iou, axis=-1)
    best_gt = tf.argmax(iou, axis=-1, output_type=tf.int32)
    matched = tf.where(best_iou >= positive_iou, best_gt,
                       tf.where(best_iou < negative_iou, NEGATIVE, IGNORED))
    if force_match:
        matched = _force_best_anchors(iou, gt_valid, matched)
    return matched


def _force_best_anchors(iou: tf.Tensor, gt_valid: tf.Tensor, matched: tf.Tensor) -> tf.Tensor:
    """Gives each valid ground-truth box with some overlap its highest-IoU anchor."""
    num_anchors = tf.shape(iou)[1]
    best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [B, M]
    claims = gt_valid & (tf.reduce_max(iou, axis=1) > 0.0)  # [B, M]
    # claim[b, a, m]: box m forces anchor a. Where boxes share a best anchor, the first wins.
    claim = tf.one_hot(best_anchor, num_anchors, axis=1, dtype=tf.int32) * tf.cast(
        claims[:, None, :], tf.int32)
    forced = tf.reduce_any(claim > 0, axis=-1)
    forced_gt = tf.argmax(claim, axis=-1, output_type=tf.int32)
    return tf.where(forced, forced_gt, matched)


def encode_targets(anchors: tf.Tensor, gt_boxes: tf.Tensor, gt_labels: tf.Tensor,
                   num_classes: int, positive_iou: float = 0.5, negative_iou: float = 0.4,
                   force_match: bool = True,
                   scale_factors: Sequence[float] = box_coder.DEFAULT_SCALE_FACTORS,
                   ) -> dict[str, tf.Tensor]:
    """Training targets on anchors [A, 4] for gt_boxes [B, M, 4], gt_labels [B, M] (-1 pads).

    Returns:
        cls_targets [B, A, C] one-hot class of positives, zeros elsewhere;
        box_targets [B, A, 4] matched boxes encoded with box_coder, zeros off positives;
        cls_weights [B, A] 0 for ignored anchors, 1 otherwise;
        box_weights [B, A] 1 for positives; num_positives [B] float32; matched [B, A] int32.
    """
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_labels = tf.convert_to_tensor(gt_labels, tf.int32)
    # One padding box keeps the gathers below valid when a batch has no boxes (M = 0).
    gt_boxes = tf.pad(gt_boxes, [[0, 0], [0, 1], [0, 0]])
    gt_labels = tf.pad(gt_labels, [[0, 0], [0, 1]], constant_values=-1)
    matched = match(anchors, gt_boxes, gt_labels >= 0, positive_iou, negative_iou, force_match)
    positive = matched >= 0
    index = tf.maximum(matched, 0)
    labels = tf.where(positive, tf.gather(gt_labels, index, batch_dims=1), -1)
    boxes = tf.gather(gt_boxes, index, batch_dims=1)
    box_weights = tf.cast(positive, tf.float32)
    return {
        "cls_targets": tf.one_hot(labels, num_classes, dtype=tf.float32),  # -1 -> zeros
        "box_targets": box_coder.encode(boxes, anchors, scale_factors) * box_weights[..., None],
        "cls_weights": tf.cast(matched != IGNORED, tf.float32),
        "box_weights": box_weights,
        "num_positives": tf.reduce_sum(box_weights, axis=-1),
        "matched": matched,
    }
