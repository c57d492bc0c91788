"""RetinaNet-style class and box heads, shared across pyramid levels."""

from __future__ import annotations

import math

import keras

# RetinaNet: start every anchor at p(object) = 0.01 so the focal loss is stable.
_PRIOR_PROBABILITY = 0.01


class SharedHead:
    """A conv tower plus a predictor, the same weights applied on every level.

    Output per level: [B, H, W, K * outputs_per_anchor], flattened by the caller.
    """

    def __init__(self, name: str, num_convs: int, filters: int, outputs: int,
                 separable: bool, bias_init: float = 0.0):
        conv = keras.layers.SeparableConv2D if separable else keras.layers.Conv2D
        self.tower = [conv(filters, 3, padding="same", activation="relu", name=f"{name}_tower_{i}")
                      for i in range(num_convs)]
        self.predictor = conv(outputs, 3, padding="same", name=f"{name}_predictor",
                              bias_initializer=keras.initializers.Constant(bias_init))

    def __call__(self, feature: keras.KerasTensor) -> keras.KerasTensor:
        for layer in self.tower:
            feature = layer(feature)
        return self.predictor(feature)


def class_head(num_convs: int, filters: int, num_anchors: int, num_classes: int,
               separable: bool) -> SharedHead:
    return SharedHead("class", num_convs, filters, num_anchors * num_classes, separable,
                      bias_init=-math.log((1 - _PRIOR_PROBABILITY) / _PRIOR_PROBABILITY))


def box_head(num_convs: int, filters: int, num_anchors: int, separable: bool) -> SharedHead:
    return SharedHead("box", num_convs, filters, num_anchors * 4, separable)
