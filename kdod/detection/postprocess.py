"""From head outputs to detections: decode, per-image top-k, per-class NMS (TensorFlow ops)."""

from __future__ import annotations

from collections.abc import Sequence

import gin
import tensorflow as tf

from kdod.detection import box_coder


@gin.configurable
def postprocess(cls_logits: tf.Tensor, box_regression: tf.Tensor, anchors: tf.Tensor,
                score_threshold: float = 0.05, iou_threshold: float = 0.5,
                max_detections: int = 100, pre_nms_top_k: int = 1000,
                scale_factors: Sequence[float] = box_coder.DEFAULT_SCALE_FACTORS,
                ) -> dict[str, tf.Tensor]:
    """Detections from cls_logits [B, A, C] and box_regression [B, A, 4] on anchors [A, 4].

    Keeps the pre_nms_top_k anchors of each image by best class score (NMS cost grows with the
    candidates), clips them to the image and runs tf.image.combined_non_max_suppression per
    class. Returns boxes [B, D, 4] normalized and clipped to [0, 1], scores [B, D],
    classes [B, D] int32 (0-based), num_detections [B] int32 (D = max_detections, rows past
    num_detections are zero), and raw_boxes [B, A, 4] (decoded, not clipped), raw_scores
    [B, A, C] (sigmoid) for export.
    """
    raw_boxes = box_coder.decode(tf.cast(box_regression, tf.float32), anchors, scale_factors)
    raw_scores = tf.sigmoid(tf.cast(cls_logits, tf.float32))
    k = tf.minimum(pre_nms_top_k, tf.shape(raw_scores)[1])
    _, top = tf.math.top_k(tf.reduce_max(raw_scores, axis=-1), k=k, sorted=False)
    candidate_boxes = tf.clip_by_value(tf.gather(raw_boxes, top, batch_dims=1), 0.0, 1.0)
    candidate_scores = tf.gather(raw_scores, top, batch_dims=1)
    nms = tf.image.combined_non_max_suppression(
        candidate_boxes[:, :, None, :], candidate_scores,
        max_output_size_per_class=max_detections, max_total_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, clip_boxes=False)
    return {
        "boxes": nms.nmsed_boxes,
        "scores": nms.nmsed_scores,
        "classes": tf.cast(nms.nmsed_classes, tf.int32),
        "num_detections": nms.valid_detections,
        "raw_boxes": raw_boxes,
        "raw_scores": raw_scores,
    }
