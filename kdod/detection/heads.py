"""RetinaNet-style class and box heads, shared across pyramid levels.

The box head predicts either 4 box codes per anchor (direct regression) or, with bins, logits
over the n + 1 side distances of each of the 4 sides (a GFL-style distribution,
kdod/detection/box_coder.py); `SideDistributionToCodes` turns those into the same 4 codes in
the network, so decoding, the losses and exports see box codes either way.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from kdod.detection import box_coder

# RetinaNet: start every anchor at p(object) = 0.01 so the focal loss is stable.
_PRIOR_PROBABILITY = 0.01


class SharedHead:
    """A conv tower plus a predictor, the same weights applied on every level.

    Output per level: [B, H, W, K * outputs_per_anchor], flattened by the caller.
    """

    def __init__(self, name: str, num_convs: int, filters: int, outputs: int,
                 separable: bool, bias_init: float | keras.initializers.Initializer = 0.0):
        conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        self.tower = [conv(filters, 3, padding="same", activation="relu", name=f"{name}_tower_{i}")
                      for i in range(num_convs)]
        if not isinstance(bias_init, keras.initializers.Initializer):
            bias_init = keras.initializers.Constant(bias_init)
        self.predictor = conv(outputs, 3, padding="same", name=f"{name}_predictor",
                              bias_initializer=bias_init)

    def __call__(self, feature: keras.KerasTensor) -> keras.KerasTensor:
        for layer in self.tower:
            feature = layer(feature)
        return self.predictor(feature)


def class_head(num_convs: int, filters: int, num_anchors: int, num_classes: int,
               separable: bool) -> SharedHead:
    return SharedHead("class", num_convs, filters, num_anchors * num_classes, separable,
                      bias_init=-math.log((1 - _PRIOR_PROBABILITY) / _PRIOR_PROBABILITY))


def box_head(num_convs: int, filters: int, num_anchors: int, separable: bool,
             bins: int = 0) -> SharedHead:
    """4 codes per anchor (bins 0), or 4 x (bins + 1) side-distance logits per anchor."""
    if not bins:
        return SharedHead("box", num_convs, filters, num_anchors * 4, separable)
    return SharedHead("box", num_convs, filters, num_anchors * 4 * (bins + 1), separable,
                      bias_init=TiledBias(anchor_sized_logits(bins).tolist()))


def anchor_sized_logits(bins: int) -> np.ndarray:
    """Logits [bins + 1] of the maximum-entropy distribution over the side distances whose mean
    is 0.5 (p_i ~ exp(-rate * d_i)): every box starts as its anchor, as direct regression's
    zero codes do. Uniform logits would start every box at twice its anchor's size."""
    distances = np.linspace(0.0, box_coder.MAX_SIDE_DISTANCE, bins + 1)

    def mean(rate: float) -> float:
        p = np.exp(-rate * distances)
        return float(np.sum(p * distances) / np.sum(p))

    low, high = 0.0, 64.0  # mean(0) = D / 2 = 1 > 0.5 > mean(64): bisect the rate.
    for _ in range(60):
        rate = (low + high) / 2
        low, high = (rate, high) if mean(rate) > 0.5 else (low, rate)
    return -rate * distances


@keras.saving.register_keras_serializable("kdod")
class TiledBias(keras.initializers.Initializer):
    """A bias that repeats `values` along its length (one block per anchor and side)."""

    def __init__(self, values: list[float]):
        self.values = list(values)

    def __call__(self, shape, dtype=None):
        repeats = shape[-1] // len(self.values)
        return tf.constant(np.tile(self.values, repeats), dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"values": self.values}


@keras.saving.register_keras_serializable("kdod")
class SideDistributionToCodes(keras.layers.Layer):
    """Side-distance logits [B, A, 4, n + 1] -> box codes [B, A, 4] of the expected distances
    (GFL's integral: sum_i softmax(logits)_i * d_i per side; box_coder.sides_to_codes)."""

    def call(self, logits):
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        distances = box_coder.bin_distances(logits.shape[-1] - 1)
        return box_coder.sides_to_codes(tf.reduce_sum(probabilities * distances, axis=-1))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])
