"""A CSP backbone of dense 3x3 convolutions, YOLOv8's (C2f blocks, Jocher et al. 2023).

Made for training on CPUs: oneDNN runs dense convolutions many times faster per FLOP than the
depthwise ones of MobileNets, so at the same step time this network can be several times wider.
`width` scales the channels (YOLOv8n: 0.25 of 64-128-256-512-1024), `depth` the number of
bottlenecks per block (YOLOv8n: 0.33 of 3-6-6-3).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kdod.backbones.features import STRIDES, check_input_shape
from kdod.config import ConfigError, check_number
from kdod.registry import register_backbone

# Channels of each stage at width 1 (stem, then strides 4, 8, 16, 32) and bottlenecks at depth 1.
CHANNELS = (64, 128, 256, 512, 1024)
BOTTLENECKS = (3, 6, 6, 3)
ACTIVATIONS = ("relu", "silu")


def _conv(x, filters: int, kernel: int, stride: int, activation: str, name: str):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.Activation(activation, name=f"{name}_act")(x)


def _c2f(x, filters: int, bottlenecks: int, activation: str, name: str):
    """Split after a 1x1 conv; a chain of residual 3x3 bottlenecks on one half; all concatenated."""
    half = filters // 2
    x = _conv(x, 2 * half, 1, 1, activation, f"{name}_in")
    parts = [x[..., :half], x[..., half:]]
    for index in range(bottlenecks):
        y = _conv(parts[-1], half, 3, 1, activation, f"{name}_b{index}a")
        y = _conv(y, half, 3, 1, activation, f"{name}_b{index}b")
        parts.append(keras.layers.Add(name=f"{name}_b{index}_add")([parts[-1], y]))
    x = keras.layers.Concatenate(name=f"{name}_concat")(parts)
    return _conv(x, filters, 1, 1, activation, f"{name}_out")


@register_backbone("csp_darknet")
def csp_darknet(input_shape: Sequence[int] = (320, 320, 3), width: float = 0.25,
                depth: float = 0.33, activation: str = "relu", strides: Sequence[int] = STRIDES,
                weights: str | None = None) -> keras.Model:
    """YOLOv8's backbone (without SPPF) as a {stride: feature} model at strides 8, 16, 32."""
    shape = check_input_shape(input_shape)
    check_number("csp_darknet.width", width, above=0)
    check_number("csp_darknet.depth", depth, above=0)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"csp_darknet.activation must be one of {ACTIVATIONS}; got "
                          f"{activation!r}.")
    channels = [max(8, round(c * width / 8) * 8) for c in CHANNELS]  # multiples of 8
    blocks = [max(1, round(n * depth)) for n in BOTTLENECKS]
    images = keras.Input(shape, name="images")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(images)
    x = _conv(x, channels[0], 3, 2, activation, "stem")
    features = {}
    for stage, (filters, bottlenecks) in enumerate(zip(channels[1:], blocks), start=1):
        x = _conv(x, filters, 3, 2, activation, f"down{stage}")
        x = _c2f(x, filters, bottlenecks, activation, f"stage{stage}")
        stride = 2 ** (stage + 1)
        if stride in strides:
            features[stride] = x
    missing = [s for s in strides if s not in features]
    if missing:
        raise ConfigError(f"csp_darknet has features at strides 4 to 32; asked for {missing}.")
    model = keras.Model(images, features, name="csp_darknet")
    if weights:
        model.load_weights(weights)
    return model
