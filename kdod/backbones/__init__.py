"""Backbones: `build(input_shape, **gin) -> keras.Model` mapping stride -> feature map.

    kdod.BACKBONES.list("mobilenet*")
    model = kdod.BACKBONES.get("mobilenet_v2")(input_shape=(320, 320, 3), alpha=0.5)
    model(images)  # {8: [B, 40, 40, C3], 16: [B, 20, 20, C4], 32: [B, 10, 10, C5]}

Inputs are RGB images in [0, 255]; each backbone applies its own normalization.
"""

from kdod.backbones import csp, keras_apps, tiny  # noqa: F401  Registers the backbones.
