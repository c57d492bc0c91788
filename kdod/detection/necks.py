"""Feature pyramid necks: backbone {stride: C} -> {level: P} with equal channels.

`fpn` is RetinaNet's (Lin et al. 2017): 1x1 laterals, nearest-neighbour top-down
sum, 3x3 output convs, P6/P7 by stride-2 convs. `fpn_lite` is the SSD MobileNet
FPNLite variant of the TF Object Detection API: the 3x3 convs are depthwise
separable, and the pyramid is narrower by default.
"""

from __future__ import annotations

import math

import keras

from kdod.config import ConfigError, check_integer
from kdod.registry import register_neck


def _conv(filters: int, separable: bool, strides: int = 1, name: str | None = None):
    if separable:
        return keras.layers.SeparableConv2D(filters, 3, strides=strides, padding="same", name=name)
    return keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=name)


def _pyramid(features: dict[int, keras.KerasTensor], min_level: int, max_level: int,
             filters: int, separable: bool, prefix: str) -> dict[int, keras.KerasTensor]:
    """Top-down pathway over the backbone levels, extra stride-2 levels above them."""
    check_integer(f"{prefix.rstrip('_')}.filters", filters)
    backbone_levels = sorted(int(math.log2(s)) for s in features if min_level <= math.log2(s))
    if not backbone_levels or backbone_levels[0] != min_level:
        raise ConfigError(f"The backbone gives strides {sorted(features)}; the neck needs stride "
                          f"{2 ** min_level} for AnchorConfig.min_level={min_level}.")
    top = min(max(backbone_levels), max_level)
    laterals = {level: keras.layers.Conv2D(filters, 1, name=f"{prefix}lateral_p{level}")(
        features[2 ** level]) for level in range(min_level, top + 1)}
    merged = {top: laterals[top]}
    for level in range(top - 1, min_level - 1, -1):
        upsampled = keras.layers.UpSampling2D(2, interpolation="nearest")(merged[level + 1])
        upsampled = _crop_like(upsampled, laterals[level])
        merged[level] = keras.layers.Add(name=f"{prefix}merge_p{level}")([laterals[level],
                                                                         upsampled])
    outputs = {level: _conv(filters, separable, name=f"{prefix}output_p{level}")(merged[level])
               for level in range(min_level, top + 1)}
    extra = features[2 ** top]  # RetinaNet builds P6 from C5.
    for level in range(top + 1, max_level + 1):
        if level > top + 1:
            extra = keras.layers.ReLU()(extra)
        extra = _conv(filters, separable, strides=2, name=f"{prefix}extra_p{level}")(extra)
        outputs[level] = extra
    return outputs


def _crop_like(upsampled: keras.KerasTensor, reference: keras.KerasTensor) -> keras.KerasTensor:
    """Upsampling an odd-sized map overshoots by one cell; cut it back to the lateral's size."""
    height, width = reference.shape[1], reference.shape[2]
    if upsampled.shape[1] == height and upsampled.shape[2] == width:
        return upsampled
    return keras.layers.Cropping2D(((0, upsampled.shape[1] - height),
                                    (0, upsampled.shape[2] - width)))(upsampled)


@register_neck("fpn")
def fpn(features: dict[int, keras.KerasTensor], min_level: int = 3, max_level: int = 7,
        filters: int = 256) -> dict[int, keras.KerasTensor]:
    """RetinaNet FPN, P{min_level}..P{max_level}."""
    return _pyramid(features, min_level, max_level, filters, separable=False, prefix="fpn_")


@register_neck("fpn_lite")
def fpn_lite(features: dict[int, keras.KerasTensor], min_level: int = 3, max_level: int = 7,
             filters: int = 128) -> dict[int, keras.KerasTensor]:
    """FPNLite: depthwise-separable 3x3 convs, 128 channels by default."""
    return _pyramid(features, min_level, max_level, filters, separable=True, prefix="fpn_lite_")
