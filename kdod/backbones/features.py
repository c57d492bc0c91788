"""Turning a classification network into a multi-scale feature extractor."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from kdod.config import ConfigError

STRIDES = (8, 16, 32)


def multiscale_model(network: keras.Model, strides: Sequence[int] = STRIDES,
                     name: str | None = None) -> keras.Model:
    """A model with `network`'s input returning {stride: last feature map at that stride}.

    Layers are chosen by their output size, not by name: keras.applications
    names some layers by a global counter ("activation_17"), which changes with
    every model built in the process.
    """
    size = network.input.shape[1]
    last_at_stride: dict[int, keras.KerasTensor] = {}
    for layer in network.layers:
        output = layer.output
        if isinstance(output, list) or len(output.shape) != 4 or output.shape[1] is None:
            continue
        if isinstance(layer, keras.layers.ZeroPadding2D):
            continue  # Padding before a strided conv is not a feature of its own.
        stride = _stride_of(size, output.shape[1])
        if stride in strides:
            last_at_stride[stride] = output
    missing = [s for s in strides if s not in last_at_stride]
    if missing:
        raise ValueError(f"{network.name} has no feature map at strides {missing} for input size "
                         f"{size}; use an input size that is a multiple of {max(strides)}.")
    return keras.Model(network.input, {s: last_at_stride[s] for s in strides},
                       name=name or network.name)


def _stride_of(input_size: int, feature_size: int) -> int | None:
    """The stride s with ceil(input_size / s) == feature_size, for 'same'-padded networks."""
    for stride in (1, 2, 4, 8, 16, 32, 64):
        if -(-input_size // stride) == feature_size:
            return stride
    return None


def check_input_shape(input_shape: Sequence[int], multiple: int = 32) -> tuple[int, int, int]:
    """Square RGB inputs whose side is a multiple of `multiple` (so all levels align)."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or shape[0] % multiple:
        raise ConfigError(f"Backbones take square RGB inputs with a side that is a multiple of "
                          f"{multiple} (DetectorConfig.image_size), e.g. (320, 320, 3); got "
                          f"{tuple(input_shape)}.")
    return shape
