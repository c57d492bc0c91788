"""Focal and global distillation (Yang et al., CVPR 2022, "Focal and Global Knowledge
Distillation for Detectors").

At each neck level, with d = F_T - F_S (the student through a 1x1 adapter where its channels
differ), the teacher's attentions A_S^t [H, W], A_C^t [C] and ground-truth masks:

    focal     alpha * sum_{hw} M_fg * A_S^t * mean_c(A_C^t * d^2)
              + beta * sum_{hw} M_bg * A_S^t * mean_c(A_C^t * d^2)
    attention gamma * (mean_{hw} |A_S^t - A_S^s| + mean_c |A_C^t - A_C^s|)
    global    lambda * mean_{hw,c} (R(F_T) - R(F_S))^2

each averaged over the images of the batch, then over levels, where

    A_S(F) = H * W * softmax_{hw}(mean_c |F| / T)    (spatial attention, mean 1)
    A_C(F) = C * softmax_c(mean_{hw} |F| / T)         (channel attention, mean 1)
    M_fg   = max over the boxes covering a cell of 1 / (the number of cells that box covers)
    M_bg   = 1 / (the number of cells no box covers), on those cells
    R(F)   = F + W_v2 ReLU(LN(W_v1 sum_j softmax_j(W_k F_j) F_j))   (a GcBlock, Cao et al. 2019)

A box covers the cells it overlaps, so a plate smaller than a cell of a coarse level still
covers the cell it lies in (the authors' code floors and ceils the box edges the same way, and
takes one more row and column). R is one GcBlock per level, trained with the student (never
exported) and, as in the paper's equation, applied to both models' features; its last layer
starts at zero, so R starts as the identity. (The authors' code uses two blocks per level, one
for each model.)

Normalization: the authors sum over channels and positions and divide by the batch size
(RetinaNet weights alpha 1e-3, beta 5e-4, gamma 1e-3, lambda 5e-6 on 256-channel COCO maps).
Here channels and positions are averaged, so each term is order 1 on kdod's small maps; the
defaults keep the paper's alpha : beta = 2 : 1 and gamma = alpha. Spelled in these units the
paper's gamma (spatial part) and lambda grow with the map size (H * W / 256 and 0.005 * H * W
times alpha): both are about 1 to 2 at level 4 of a 320-pixel input, hence gamma = lambda = 1.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdod.config import check_number
from kdod.distill.losses.levels import NeckFeatureLoss
from kdod.registry import register_loss


def box_cells(height: int, width: int, boxes: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """[B, H, W, M] true where a cell of an H x W grid overlaps box m (labels -1: no box)."""
    rows = tf.range(height, dtype=tf.float32)[None, :, None, None]
    cols = tf.range(width, dtype=tf.float32)[None, None, :, None]
    ymin, xmin, ymax, xmax = (boxes[:, None, None, :, i] for i in range(4))
    in_rows = ((rows + 1) / height > ymin) & (rows / height < ymax)
    in_cols = ((cols + 1) / width > xmin) & (cols / width < xmax)
    return in_rows & in_cols & (labels[:, None, None, :] >= 0)


def foreground_background_masks(height: int, width: int, boxes: tf.Tensor,
                                labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """FGD's area-scaled masks [B, H, W]: each box's cells weigh 1 / its cell count (the
    largest weight where boxes overlap), the other cells 1 / their count."""
    cells = tf.cast(box_cells(height, width, boxes, labels), tf.float32)
    area = tf.reduce_sum(cells, axis=[1, 2], keepdims=True)
    foreground = tf.reduce_max(cells / tf.maximum(area, 1.0), axis=-1)
    background = tf.cast(foreground == 0, tf.float32)
    background /= tf.maximum(tf.reduce_sum(background, axis=[1, 2], keepdims=True), 1.0)
    return foreground, background


def _attention(mean_magnitudes: tf.Tensor, temperature: float) -> tf.Tensor:
    """n * softmax(x / T) over the last axis of size n: weights of mean 1."""
    size = tf.cast(tf.shape(mean_magnitudes)[-1], tf.float32)
    return size * tf.nn.softmax(mean_magnitudes / temperature, axis=-1)


def spatial_attention(features: tf.Tensor, temperature: float) -> tf.Tensor:
    """[B, H, W, C] -> [B, H, W]: H * W * softmax over the positions of mean_c |F| / T."""
    magnitudes = tf.reduce_mean(tf.abs(features), axis=-1)
    flat = tf.reshape(magnitudes, [tf.shape(features)[0], -1])
    return tf.reshape(_attention(flat, temperature), tf.shape(magnitudes))


def channel_attention(features: tf.Tensor, temperature: float) -> tf.Tensor:
    """[B, H, W, C] -> [B, C]: C * softmax over the channels of mean_hw |F| / T."""
    return _attention(tf.reduce_mean(tf.abs(features), axis=[1, 2]), temperature)


class GlobalContextBlock(keras.layers.Layer):
    """R(F) = F + W_v2 ReLU(LN(W_v1 context)), context = sum_j softmax_j(W_k F_j) F_j.

    GCNet's block (Cao et al., ICCVW 2019) with a bottleneck of half the channels. [B, H, W, C].
    """

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        # W_k: a 1x1 convolution to one map; a bias would cancel out in the softmax.
        self.context_logits = keras.layers.Dense(1, use_bias=False)
        self.transform = keras.Sequential([
            keras.layers.Dense(max(1, channels // 2)), keras.layers.LayerNormalization(),
            keras.layers.ReLU(), keras.layers.Dense(channels, kernel_initializer="zeros")])

    def call(self, features: tf.Tensor) -> tf.Tensor:
        flat = tf.reshape(features, [tf.shape(features)[0], -1, features.shape[-1]])
        weights = tf.nn.softmax(self.context_logits(flat), axis=1)  # [B, H*W, 1]
        context = tf.reduce_sum(weights * flat, axis=1)  # [B, C]
        return features + self.transform(context)[:, None, None, :]


@register_loss("fgd")
class FocalGlobalDistillation(NeckFeatureLoss):
    """FGD: attention-weighted feature imitation inside and outside the ground-truth boxes,
    attention imitation, and the imitation of global relations through a GcBlock.

    Args:
        temperature: T of both attentions (0.5 in the paper).
        alpha: weight of the foreground imitation.
        beta: weight of the background imitation.
        gamma: weight of the attention imitation.
        lambda_: weight of the global (relation) imitation (`lambda` is a Python keyword).
        levels: neck levels to distill; default all levels both models have.
    """

    name = "fgd"

    def __init__(self, temperature: float = 0.5, alpha: float = 1.0, beta: float = 0.5,
                 gamma: float = 1.0, lambda_: float = 1.0,
                 levels: tuple[int, ...] | None = None):
        check_number("fgd.temperature", temperature, above=0)
        for setting, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                               ("lambda_", lambda_)):
            check_number(f"fgd.{setting}", value, at_least=0)
        super().__init__(levels)
        self.temperature = temperature
        self.alpha, self.beta, self.gamma, self.lambda_ = alpha, beta, gamma, lambda_

    def level_layer(self, level: int, channels: int) -> GlobalContextBlock:
        return GlobalContextBlock(channels, name=f"fgd_gc_block_p{level}")

    def level_loss(self, level: int, student: tf.Tensor, teacher: tf.Tensor,
                   batch) -> tf.Tensor:
        foreground, background = foreground_background_masks(
            teacher.shape[1], teacher.shape[2], batch["boxes"], batch["labels"])
        spatial_t = spatial_attention(teacher, self.temperature)
        channel_t = channel_attention(teacher, self.temperature)
        squared = channel_t[:, None, None, :] * tf.square(teacher - student)
        error = spatial_t * tf.reduce_mean(squared, axis=-1)  # [B, H, W]
        focal = (self.alpha * tf.reduce_sum(foreground * error, axis=[1, 2])
                 + self.beta * tf.reduce_sum(background * error, axis=[1, 2]))
        attention = (
            tf.reduce_mean(tf.abs(spatial_t - spatial_attention(student, self.temperature)))
            + tf.reduce_mean(tf.abs(channel_t - channel_attention(student, self.temperature))))
        block = self.layer_by_level[level]
        relation = tf.reduce_mean(tf.square(block(teacher) - block(student)))
        return tf.reduce_mean(focal) + self.gamma * attention + self.lambda_ * relation
