"""keras.applications networks as multi-scale backbones.

`weights` is None (random init), "imagenet" (downloaded by keras.applications
into ~/.keras/models) or the path of a weights file for the same network
(`.weights.h5`, as written by `model.save_weights`, or keras.applications'
own `.h5` download).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import keras

from kdod.backbones.features import STRIDES, check_input_shape, multiscale_model
from kdod.errors import KdodError
from kdod.registry import register_backbone

apps = keras.applications
# Caffe-style networks (ResNet) take BGR minus the ImageNet mean.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class Normalize(keras.layers.Layer):
    """The input normalization a keras.applications network was trained with."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("tf", "caffe"):
            raise ValueError(f"Unknown normalization {mode!r}.")
        self.mode = mode

    def call(self, images):
        images = keras.ops.cast(images, "float32")
        if self.mode == "tf":
            return images / 127.5 - 1.0
        return images[..., ::-1] - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class WeightsUnavailableError(KdodError):
    """ImageNet weights could not be fetched (typically: no internet)."""


def _build_network(name: str, constructor: Callable[..., keras.Model], input_shape, weights,
                   **kwargs) -> keras.Model:
    """Builds the network, turning a failed download into advice instead of a URL traceback."""
    local_file = weights not in (None, "imagenet")
    if local_file and not os.path.isfile(weights):
        raise FileNotFoundError(f"Weights file for {name} not found: {weights}")
    try:
        network = constructor(input_shape=input_shape, include_top=False,
                              weights=None if local_file else weights, **kwargs)
    except Exception as error:
        if weights != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"Could not get ImageNet weights for backbone {name!r} ({error}). Offline, pass "
            f"weights=None to start from random weights, or weights='/path/to/file.h5' with a "
            f"weights file for the same network (e.g. copied from ~/.keras/models on a machine "
            f"with internet, or saved with model.save_weights).") from error
    if local_file:
        network.load_weights(weights)
    return network


def _register_application(name: str, constructor: Callable[..., keras.Model],
                          normalization: str | None = None, width_multiplier: bool = False,
                          **fixed_kwargs) -> None:
    """Registers `name` as a backbone built from a keras.applications constructor."""

    def build(input_shape: Sequence[int] = (320, 320, 3), weights: str | None = None,
              strides: Sequence[int] = STRIDES, alpha: float | None = None) -> keras.Model:
        # alpha (MobileNets' width multiplier) is an explicit parameter so that gin's operative
        # config records it even at its default: a distillation teacher is rebuilt from that.
        shape = check_input_shape(input_shape)
        kwargs = dict(fixed_kwargs)
        if alpha is not None:
            if not width_multiplier:
                raise ValueError(f"Backbone {name} has no width multiplier (alpha).")
            kwargs["alpha"] = alpha
        network = _build_network(name, constructor, shape, weights, **kwargs)
        features = multiscale_model(network, strides, name=f"{name}_features")
        if normalization is None:
            return features
        images = keras.Input(shape, name="images")
        return keras.Model(images, features(Normalize(normalization)(images)), name=name)

    build.__name__ = name
    build.__doc__ = f"keras.applications {constructor.__name__} as a {{stride: feature}} backbone."
    register_backbone(name)(build)


_register_application("mobilenet_v2", apps.MobileNetV2, "tf", width_multiplier=True)
_register_application("mobilenet_v3_small", apps.MobileNetV3Small, width_multiplier=True,
                      include_preprocessing=True)
_register_application("mobilenet_v3_large", apps.MobileNetV3Large, width_multiplier=True,
                      include_preprocessing=True)
for _i, _constructor in enumerate((apps.EfficientNetB0, apps.EfficientNetB1,
                                   apps.EfficientNetB2, apps.EfficientNetB3)):
    _register_application(f"efficientnet_b{_i}", _constructor)
for _i, _constructor in enumerate((apps.EfficientNetV2B0, apps.EfficientNetV2B1,
                                   apps.EfficientNetV2B2, apps.EfficientNetV2B3)):
    _register_application(f"efficientnetv2_b{_i}", _constructor)
_register_application("resnet50", apps.ResNet50, "caffe")
_register_application("resnet101", apps.ResNet101, "caffe")
