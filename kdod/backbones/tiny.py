"""A tiny CNN backbone for tests and quick experiments (about 60k parameters at width 8)."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kdod.backbones.features import STRIDES, check_input_shape
from kdod.config import check_integer
from kdod.registry import register_backbone


@register_backbone("tiny_cnn")
def tiny_cnn(input_shape: Sequence[int] = (128, 128, 3), width: int = 8,
             strides: Sequence[int] = STRIDES, weights: str | None = None) -> keras.Model:
    """Stride-2 conv blocks, doubling channels (capped at 8x width) at each halving."""
    shape = check_input_shape(input_shape)
    check_integer("tiny_cnn.width", width)
    images = keras.Input(shape, name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(images)
    features, stride, channels = {}, 1, width
    while stride < max(strides):
        stride *= 2
        x = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        if stride in strides:
            features[stride] = x
        channels = min(channels * 2, width * 8)
    model = keras.Model(images, features, name="tiny_cnn")
    if weights:
        model.load_weights(weights)
    return model
