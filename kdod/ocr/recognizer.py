"""The plate recognizer's network: a small CNN, a convolutional sequence layer and CTC frames.

    gin:  RecognizerConfig.height = 48
          RecognizerConfig.filters = (24, 48, 64, 96, 96)

A crop is resized to ``height`` x ``width`` (stretched: plates are 2:1 to 5:1) and read as
frames along its width (CTC, `kdod.ocr.ctc`). The CNN pools the image to 1/8 of its height and
1/4 of its width. With ``two_lines`` the same CNN also reads the crop's top half with its
bottom half beside it, one line of twice the width, so a two-line plate reads top line first
then bottom line; the frames are the whole crop's run, then that run. A layout gate (a sigmoid
of the feature map's mean) scales the halves' run by how two-line the plate looks and the
whole run by the rest: the top half of a one-line US plate holds its state name, which must
read as nothing. Training teaches the gate each rendered crop's layout
(`kdod.train_ocr_lib.training_model`); taught by CTC alone it said one-line for every plate.
CTC is held to the layout too (`kdod.train_ocr_lib.layout_ctc_loss`): aligned freely over
both runs, one-line plates were read half from each. Halves cut from the CNN's features
(6 rows of a 48-pixel crop), not from the image, read two-line plates 7.4% exact after 8000
steps: each half's features see most of the other line.
A global context vector (the mean again) is added to every frame, so each frame knows which
kind of plate it is in.
"""

from __future__ import annotations

import dataclasses

import gin
import keras
from keras import layers

from kdod import config
from kdod.ocr import ctc


@gin.configurable(module="kdod.ocr")
@dataclasses.dataclass(frozen=True)
class RecognizerConfig:
    """The network's shape.

    Attributes:
        height, width: the input crop size in pixels (multiples of 8 and 4).
        filters: channels of the CNN's 3x3 convolutions; the first two are followed by 2x2
            pooling and the third by 2x1 pooling (at least three).
        sequence_filters, sequence_kernel, sequence_layers: the residual 1-D convolutions
            along the frames.
        two_lines: read two-line plates (three runs of frames, see the module docstring).
        dropout: before each sequence convolution, in training.
    """

    height: int = 48
    width: int = 144
    filters: tuple[int, ...] = (24, 48, 64, 96, 96)
    sequence_filters: int = 96
    sequence_kernel: int = 5
    sequence_layers: int = 2
    two_lines: bool = True
    dropout: float = 0.1

    def __post_init__(self):
        config.check_integer("RecognizerConfig.height", self.height, minimum=8)
        config.check_integer("RecognizerConfig.width", self.width, minimum=4)
        rows = 16 if self.two_lines else 8  # Each half of a two-line plate is pooled by 8.
        if self.height % rows or self.width % 4:
            raise config.ConfigError(f"RecognizerConfig.height must be a multiple of {rows} and "
                                     f"width of 4; got {self.height} x {self.width}.")
        if len(self.filters) < 3:
            raise config.ConfigError(f"RecognizerConfig.filters needs at least 3 entries; got "
                                     f"{self.filters!r}.")
        for name in ("sequence_filters", "sequence_kernel"):
            config.check_integer(f"RecognizerConfig.{name}", getattr(self, name))
        config.check_integer("RecognizerConfig.sequence_layers", self.sequence_layers, minimum=0)
        config.check_number("RecognizerConfig.dropout", self.dropout, at_least=0, below=1)

    @property
    def frames(self) -> int:
        """CTC frames per crop."""
        return (3 if self.two_lines else 1) * self.width // 4


POOLS = ((2, 2), (2, 2), (2, 1))  # after the first three convolutions


def _conv_block(x, filters: int, index: int):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index}")(x)
    x = layers.BatchNormalization(name=f"bn{index}")(x)
    x = layers.ReLU(name=f"relu{index}")(x)
    if index < len(POOLS):
        x = layers.MaxPooling2D(POOLS[index], name=f"pool{index}")(x)
    return x


def _cnn(filters: tuple[int, ...]) -> keras.Model:
    """The convolutions, for images of any size: the whole crop and its halves share them."""
    images = keras.Input((None, None, 3), name="scaled")
    x = images
    for index, count in enumerate(filters):
        x = _conv_block(x, count, index)
    return keras.Model(images, x, name="cnn")


def _frames(features, filters: int, name: str):
    """The feature map's rows collapsed into one frame per column."""
    rows, columns = features.shape[1:3]
    collapsed = layers.Conv2D(filters, (rows, 1), activation="relu", name=name)(features)
    return layers.Reshape((columns, filters), name=f"{name}_frames")(collapsed)


def _side_by_side(x, height: int):
    """The top half of the crop and its bottom half beside it: a two-line plate as one line."""
    half = height // 2
    top = layers.Cropping2D(((0, half), (0, 0)), name="top_half")(x)
    bottom = layers.Cropping2D(((half, 0), (0, 0)), name="bottom_half")(x)
    return layers.Concatenate(axis=2, name="halves_image")([top, bottom])


def _gated(frames, gate, name: str):
    """`frames` [B, T, C] scaled by the per-crop `gate` [B, 1]."""
    gates = layers.RepeatVector(frames.shape[1], name=f"{name}_gates")(gate)
    return layers.Multiply(name=f"{name}_gated")([frames, gates])


def build_recognizer(recognizer: RecognizerConfig | None = None) -> keras.Model:
    """images float32 [B, height, width, 3] in 0..255 -> logits [B, frames, ctc.NUM_CLASSES]."""
    spec = recognizer or RecognizerConfig()
    images = keras.Input((spec.height, spec.width, 3), name="images")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(images)
    cnn, width = _cnn(spec.filters), spec.sequence_filters
    features = cnn(x)
    mean = layers.GlobalAveragePooling2D(name="mean")(features)
    sequence = _frames(features, width, "whole")
    if spec.two_lines:
        two_line = layers.Dense(1, activation="sigmoid", name="two_line")(mean)
        one_line = layers.Rescaling(-1.0, offset=1.0, name="one_line")(two_line)  # 1 - p
        halves = _frames(cnn(_side_by_side(x, spec.height)), width, "halves")
        sequence = layers.Concatenate(axis=1, name="runs")(
            [_gated(sequence, one_line, "whole"), _gated(halves, two_line, "halves")])
    context = layers.Dense(width, name="context")(mean)
    context = layers.RepeatVector(sequence.shape[1], name="context_frames")(context)
    sequence = layers.Add(name="with_context")([sequence, context])
    for index in range(spec.sequence_layers):
        step = layers.Dropout(spec.dropout, name=f"drop{index}")(sequence)
        step = layers.Conv1D(width, spec.sequence_kernel, padding="same", activation="relu",
                             name=f"sequence{index}")(step)
        sequence = layers.Add(name=f"residual{index}")([sequence, step])
    logits = layers.Dense(ctc.NUM_CLASSES, name="logits")(sequence)
    return keras.Model(images, logits, name="plate_ctc")
