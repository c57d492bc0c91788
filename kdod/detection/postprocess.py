"""From head outputs to detections: decode, per-image top-k, per-class NMS.

`postprocess` is TensorFlow ops (training, evaluation, the SavedModel); `postprocess_image` gives
the same detections of one image in NumPy, for the TFLite runner.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import gin
import numpy as np
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


def postprocess_settings() -> dict:
    """`postprocess`'s settings in force: its defaults, overridden by the gin bindings."""
    parameters = inspect.signature(postprocess).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    return {**defaults, **gin.get_bindings(postprocess)}


def postprocess_image(cls_logits: np.ndarray, box_regression: np.ndarray, anchors: np.ndarray,
                      score_threshold: float = 0.05, iou_threshold: float = 0.5,
                      max_detections: int = 100, pre_nms_top_k: int = 1000,
                      scale_factors: Sequence[float] = box_coder.DEFAULT_SCALE_FACTORS,
                      ) -> dict[str, np.ndarray]:
    """`postprocess` of one image in NumPy: cls_logits [A, C], box_regression [A, 4].

    The same detections, for the TFLite runner: there one image's graph calls cost more than
    the work (1.3-1.8 ms against ~0.1), since only the anchors scoring above score_threshold
    need decoding. Returns boxes [D, 4] normalized and clipped, scores [D] (best first) and
    classes [D] int32, D <= max_detections.
    """
    logits = np.asarray(cls_logits, np.float32)
    best = logits.max(axis=-1)
    # Logits a little below the threshold's too: the scores decide, as sigmoid rounds.
    candidates = np.flatnonzero(best > _logit(score_threshold) - 1e-4)
    if candidates.size > pre_nms_top_k:
        candidates = candidates[np.argsort(-best[candidates], kind="stable")[:pre_nms_top_k]]
    scores = 1.0 / (1.0 + np.exp(-logits[candidates]))
    boxes = np.clip(_decode(np.asarray(box_regression, np.float32)[candidates],
                            np.asarray(anchors, np.float32)[candidates], scale_factors), 0.0, 1.0)
    kept = [(scores[index, label], label, index)
            for label in range(logits.shape[-1])
            for index in _class_nms(boxes, scores[:, label], score_threshold, iou_threshold,
                                    max_detections)]
    kept = sorted(kept, key=lambda row: -row[0])[:max_detections]
    indices = np.asarray([index for _, _, index in kept], np.intp)
    return {"boxes": boxes[indices].reshape(-1, 4),
            "scores": np.asarray([score for score, _, _ in kept], np.float32),
            "classes": np.asarray([label for _, label, _ in kept], np.int32)}


def _logit(probability: float) -> float:
    return math.log(probability / (1.0 - probability)) if 0.0 < probability < 1.0 else -math.inf


def _decode(codes: np.ndarray, anchors: np.ndarray, scale_factors: Sequence[float]) -> np.ndarray:
    """`box_coder.decode` in NumPy, for a few candidate anchors."""
    centres, sizes = (anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]
    sizes = sizes + box_coder.EPSILON
    scales = np.asarray(scale_factors, np.float32)
    centres = codes[:, :2] / scales[:2] * sizes + centres
    sizes = np.exp(np.minimum(codes[:, 2:] / scales[2:], box_coder.MAX_LOG_SIZE_RATIO)) * sizes
    return np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1)


def _class_nms(boxes: np.ndarray, scores: np.ndarray, score_threshold: float,
               iou_threshold: float, limit: int) -> list[int]:
    """Greedy NMS of one class: the indices kept, best first."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    kept = []
    while order.size and len(kept) < limit:
        best, order = order[0], order[1:]
        kept.append(int(best))
        overlap = np.prod(np.clip(np.minimum(boxes[best, 2:], boxes[order, 2:])
                                  - np.maximum(boxes[best, :2], boxes[order, :2]), 0.0, None),
                          axis=1)
        union = areas[best] + areas[order] - overlap
        iou = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)
        order = order[iou <= iou_threshold]
    return kept
