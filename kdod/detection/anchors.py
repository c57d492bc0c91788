"""Multi-level anchors of RetinaNet / SSD-FPN detectors.

Level ``l`` has stride ``2**l`` and a grid of ``ceil(image_size / 2**l)`` cells per side. Each
cell holds ``scales_per_octave * len(aspect_ratios)`` anchors ("anchor types"), ordered scale
first, then aspect ratio. Anchors are listed level by level, then row ``y``, column ``x`` and
anchor type, which is the order of a head output ``[B, H, W, K * C]`` reshaped to
``[B, H * W * K, C]`` and concatenated over levels.

Boxes are normalized ``(ymin, xmin, ymax, xmax)`` relative to the square input image. Anchors
are not clipped: like RetinaNet's, those near the border extend past the image.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import gin
import numpy as np
import tensorflow as tf

from kdod.config import ConfigError, check_integer, check_number


@gin.configurable
@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Anchor settings.

    Attributes:
        min_level: finest feature level (stride ``2**min_level``).
        max_level: coarsest feature level.
        anchor_scale: anchor base size in strides (base size = ``anchor_scale * stride``).
        scales_per_octave: sizes per level, ``base * 2**(i / scales_per_octave)``.
        aspect_ratios: anchor width / height. Licence plates are wide (w/h 1.4 to 5, median
            about 3 in the real data sets), hence the wide defaults.
    """

    min_level: int = 3
    max_level: int = 7
    anchor_scale: float = 4.0
    scales_per_octave: int = 2
    aspect_ratios: tuple[float, ...] = (1.5, 2.5, 4.0)

    def __post_init__(self):
        ratios = self.aspect_ratios
        if (not isinstance(ratios, list | tuple) or not ratios
                or not all(isinstance(r, numbers.Real) and 0 < r < math.inf for r in ratios)):
            raise ConfigError("AnchorConfig.aspect_ratios must be a non-empty list of positive "
                              f"width/height ratios, got {ratios!r}.")
        # gin passes lists; a tuple keeps the config hashable and comparable.
        object.__setattr__(self, "aspect_ratios", tuple(float(r) for r in ratios))
        check_integer("AnchorConfig.min_level", self.min_level)
        check_integer("AnchorConfig.max_level", self.max_level)
        if self.min_level > self.max_level:
            raise ConfigError(f"AnchorConfig needs min_level <= max_level, got min_level="
                              f"{self.min_level}, max_level={self.max_level}.")
        check_number("AnchorConfig.anchor_scale", self.anchor_scale, above=0)
        check_integer("AnchorConfig.scales_per_octave", self.scales_per_octave)

    @property
    def levels(self) -> range:
        return range(self.min_level, self.max_level + 1)

    @property
    def num_anchors_per_location(self) -> int:
        return self.scales_per_octave * len(self.aspect_ratios)


def level_shapes(image_size: int, config: AnchorConfig) -> list[tuple[int, int]]:
    """Grid (height, width) of each level, finest first."""
    return [(math.ceil(image_size / 2**level),) * 2 for level in config.levels]


def anchors_per_level(image_size: int, config: AnchorConfig) -> list[int]:
    """Number of anchors of each level, finest first (to split [B, A, ...] by level)."""
    k = config.num_anchors_per_location
    return [h * w * k for h, w in level_shapes(image_size, config)]


def _anchor_sizes(stride: int, config: AnchorConfig) -> np.ndarray:
    """(height, width) in pixels of the K anchor types of a level, scale first then ratio."""
    sizes = []
    for octave in range(config.scales_per_octave):
        base = config.anchor_scale * stride * 2 ** (octave / config.scales_per_octave)
        for ratio in config.aspect_ratios:
            # Same area as the square base anchor, width / height = ratio.
            sizes.append((base / math.sqrt(ratio), base * math.sqrt(ratio)))
    return np.asarray(sizes, dtype=np.float64)


def _level_anchors(level: int, image_size: int, config: AnchorConfig) -> np.ndarray:
    stride = 2**level
    grid = math.ceil(image_size / stride)
    centres = (np.arange(grid, dtype=np.float64) + 0.5) * stride
    cy, cx = np.meshgrid(centres, centres, indexing="ij")  # [H, W], rows then columns
    sizes = _anchor_sizes(stride, config)  # [K, 2]
    cy, cx = cy[:, :, None], cx[:, :, None]
    half_h, half_w = sizes[:, 0] / 2, sizes[:, 1] / 2
    boxes = np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)  # [H,W,K,4]
    return boxes.reshape(-1, 4) / image_size


def generate_anchors(image_size: int, config: AnchorConfig) -> tf.Tensor:
    """All anchors, float32 [A, 4] normalized (ymin, xmin, ymax, xmax), in head-output order."""
    boxes = np.concatenate([_level_anchors(level, image_size, config) for level in config.levels])
    return tf.constant(boxes, dtype=tf.float32)


def level_shift(size_a: int, size_b: int) -> int | None:
    """k where size_a = size_b * 2**k (an integer, possibly negative or 0), else None.

    Layout a with levels shifted by k from layout b, the same anchor settings otherwise, has
    b's anchors exactly (normalized): a level's grid and anchor sizes follow its stride over the
    image size, and 2**(level + k) / (size_b * 2**k) = 2**level / size_b."""
    octaves = math.log2(size_a / size_b)
    k = round(octaves)
    return k if size_b * 2.0**k == size_a else None


def describe_differences(a: AnchorConfig, b: AnchorConfig, size_a: int,
                         size_b: int) -> list[str]:
    """Settings in which two anchor layouts differ, as "name: a vs b"; empty when their anchors
    are the same boxes: the same settings and image size, or an image size 2**k times b's with
    levels k above b's (`level_shift`)."""
    shift = level_shift(size_a, size_b)
    if shift is None:
        return [f"image_size: {size_a} vs {size_b}"] + _setting_differences(a, b, {})
    expected = {"min_level": b.min_level + shift, "max_level": b.max_level + shift}
    differences = _setting_differences(a, b, expected)
    if shift and differences:
        differences.append(f"image_size: {size_a} vs {size_b} (at {2**shift} times the image "
                           f"size, the levels must be {shift:+d} from the other's)")
    return differences


def _setting_differences(a: AnchorConfig, b: AnchorConfig, expected: dict) -> list[str]:
    """Fields of `a` that are not `b`'s, or not `expected[name]` where given."""
    differences = []
    for field in dataclasses.fields(AnchorConfig):
        value_a = getattr(a, field.name)
        value_b = expected.get(field.name, getattr(b, field.name))
        if value_a != value_b:
            differences.append(f"{field.name}: {value_a} vs {value_b}")
    return differences
