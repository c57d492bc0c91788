"""Feature imitation: the student's neck features, through 1x1 adapters, imitate the teacher's.

Masks choose where: everywhere ("none"), inside ground-truth boxes ("gt"), or the
fine-grained imitation mask of Wang et al. (CVPR 2019, "Distilling Object Detectors with
Fine-grained Feature Imitation"): for each ground-truth box, the anchors whose IoU with it
exceeds psi times that box's best anchor IoU; a location is imitated when any of its anchors
is chosen.

With ``standardize=True`` both feature maps are first normalized per image and channel to
zero mean and unit variance over the spatial positions, as in PKD (Cao et al., NeurIPS 2022,
"PKD: General Distillation Framework for Object Detectors via Pearson Correlation
Coefficient"): the loss no longer depends on how large either model's activations are, only
on the pattern, and the error becomes 2 * (1 - Pearson correlation).
"""

from __future__ import annotations

import tensorflow as tf

from kdod.detection.matcher import pairwise_iou
from kdod.distill.losses.levels import NeckFeatureLoss
from kdod.registry import register_loss

MASKS = ("none", "gt", "fine_grained")


def standardize(features: tf.Tensor, epsilon: float = 1e-6) -> tf.Tensor:
    """Zero mean, unit variance per image and channel over the spatial positions [B, H, W, C]."""
    mean, variance = tf.nn.moments(features, axes=[1, 2], keepdims=True)
    return (features - mean) * tf.math.rsqrt(variance + epsilon)


def cell_centres(height: int, width: int) -> tf.Tensor:
    """Normalized (y, x) centres of an H x W grid: [H, W, 2]."""
    ys = (tf.range(height, dtype=tf.float32) + 0.5) / height
    xs = (tf.range(width, dtype=tf.float32) + 0.5) / width
    grid_y, grid_x = tf.meshgrid(ys, xs, indexing="ij")
    return tf.stack([grid_y, grid_x], axis=-1)


def gt_mask(height: int, width: int, boxes: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """[B, H, W] 1 where a cell centre lies inside a ground-truth box (labels -1 are padding)."""
    centres = cell_centres(height, width)[None, :, :, None, :]  # [1, H, W, 1, 2]
    b = boxes[:, None, None, :, :]  # [B, 1, 1, M, 4]
    inside = ((centres[..., 0] >= b[..., 0]) & (centres[..., 0] <= b[..., 2])
              & (centres[..., 1] >= b[..., 1]) & (centres[..., 1] <= b[..., 3])
              & (labels[:, None, None, :] >= 0))
    return tf.cast(tf.reduce_any(inside, axis=-1), tf.float32)


def fine_grained_masks(level_shapes: list[tuple[int, int]], anchors: tf.Tensor,
                       boxes: tf.Tensor, labels: tf.Tensor, psi: float) -> list[tf.Tensor]:
    """Wang et al.'s masks, one [B, H, W] per level, from anchors [A, 4] laid out by level.

    The threshold of each box is psi times its best IoU over the anchors of all levels given.
    """
    cells = [h * w for h, w in level_shapes]
    per_location = anchors.shape[0] // sum(cells)
    iou = pairwise_iou(anchors[None], boxes)  # [B, A, M]
    iou = tf.where(labels[:, None, :] >= 0, iou, -1.0)
    threshold = psi * tf.reduce_max(iou, axis=1, keepdims=True)  # [B, 1, M]
    chosen = tf.reduce_any((iou > threshold) & (iou > 0), axis=-1)  # [B, A]
    masks, start = [], 0
    for (h, w), count in zip(level_shapes, cells):
        level = chosen[:, start:start + count * per_location]
        start += count * per_location
        level = tf.reshape(level, [-1, h, w, per_location])
        masks.append(tf.cast(tf.reduce_any(level, axis=-1), tf.float32))
    return masks


@register_loss("feature_imitation")
class FeatureImitation(NeckFeatureLoss):
    """Masked L2 between adapted student and teacher neck features on matching levels.

    The squared error is averaged over channels and over the masked locations of all
    levels (Wang et al. sum channels and halve: only the scale differs).

    Args:
        mask: "none", "gt" or "fine_grained".
        psi: the fine-grained mask's threshold factor (Wang et al. use 0.5).
        levels: neck levels to imitate; default all levels both models have.
        standardize: compare per-channel standardized features (PKD) instead of raw ones.
    """

    name = "feature_imitation"

    def __init__(self, mask: str = "fine_grained", psi: float = 0.5,
                 levels: tuple[int, ...] | None = None, standardize: bool = False):
        if mask not in MASKS:
            raise ValueError(f"feature_imitation.mask must be one of {MASKS}, got {mask!r}.")
        super().__init__(levels)
        self.mask, self.psi, self.standardize = mask, psi, standardize

    def adapter_name(self, level: int) -> str:  # Unprefixed: earlier runs' checkpoints load.
        return f"adapter_p{level}"

    def masks(self, teacher_out, batch) -> list[tf.Tensor]:
        features = teacher_out["features"]
        shapes = [(features[lv].shape[1], features[lv].shape[2]) for lv in self.levels]
        batch_size = tf.shape(features[self.levels[0]])[0]
        if self.mask == "none":
            return [tf.ones([batch_size, h, w]) for h, w in shapes]
        if self.mask == "gt":
            return [gt_mask(h, w, batch["boxes"], batch["labels"]) for h, w in shapes]
        all_levels = sorted(features)
        all_shapes = [(features[lv].shape[1], features[lv].shape[2]) for lv in all_levels]
        masks = fine_grained_masks(all_shapes, batch["teacher_anchors"], batch["boxes"],
                                   batch["labels"], self.psi)
        return [masks[all_levels.index(lv)] for lv in self.levels]

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        total, count = 0.0, 0.0
        for level, mask in zip(self.levels, self.masks(teacher_out, batch)):
            student = self.student_features(student_out, level)
            teacher = self.teacher_features(teacher_out, level)
            if self.standardize:
                student, teacher = standardize(student), standardize(teacher)
            error = tf.reduce_mean(tf.square(student - teacher), axis=-1)
            total += tf.reduce_sum(error * mask)
            count += tf.reduce_sum(mask)
        return total / tf.maximum(count, 1.0)
