"""Window geometry shared by training, evaluation, export and plate reading.

A *window* is a square ``[y0, x0, y1, x1]`` in a source image's pixels that is resampled to the
model's ``size x size`` input. Training draws random windows (`kdod.data.augment`); evaluation,
the exported SavedModel, the TFLite runner and `kdod.ocr.anpr` use the letterbox window
``[0, 0, max(H, W), max(H, W)]``: the whole image, aspect kept, padded at the bottom/right.
`to_window_boxes` maps boxes into a window and `to_image_boxes` maps them back.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def letterbox_window(image_hw: tf.Tensor) -> tf.Tensor:
    """The square window [y0, x0, y1, x1] (pixels) holding the whole image at its top-left."""
    side = tf.cast(tf.reduce_max(image_hw), tf.float32)
    return tf.stack([0.0, 0.0, side, side])


def crop_resize(image: tf.Tensor, window: tf.Tensor, size: int,
                pad_value: float = 0.0) -> tf.Tensor:
    """Cuts `window` (pixel edges) out of `image` and resamples it to size x size, float32.

    Output pixel i samples the source at pixel-centre coordinate
    ``a - 0.5 + (i + 0.5) * (b - a) / size``; crop_and_resize's coordinates are
    converted so that boxes transformed by `to_window_boxes` stay exact.
    """
    image, window = _shrink_if_much_larger(tf.cast(image, tf.float32), window, size)
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    start, end = window[:2], window[2:]
    extent = end - start
    denominator = tf.maximum(hw - 1.0, 1.0)
    box_start = (start - 0.5 + 0.5 * extent / size) / denominator
    box_end = box_start + extent * (size - 1) / (size * denominator)
    return tf.image.crop_and_resize(
        image[None], tf.concat([box_start, box_end], 0)[None], [0],
        [size, size], extrapolation_value=pad_value)[0]


def _shrink_if_much_larger(image: tf.Tensor, window: tf.Tensor,
                           size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Area-averages images with over 2 source pixels per output pixel down to 2.

    crop_and_resize samples points: from a 4000-pixel photo into 320 pixels it would
    alias thin strokes (plate characters) away. The window is rescaled with the image,
    so it covers the same part of the scene and boxes need no change.
    """
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    factor = tf.reduce_max(window[2:] - window[:2]) / (2.0 * size)

    def shrink():
        new_hw = tf.maximum(tf.round(hw / factor), 1.0)
        shrunk = tf.image.resize(image, tf.cast(new_hw, tf.int32), method="area")
        return shrunk, window * tf.tile(new_hw / hw, [2])

    return tf.cond(factor > 1.0, shrink, lambda: (image, window))


def to_window_boxes(boxes: tf.Tensor, image_hw: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """Maps normalized boxes of the source image into normalized coordinates of the window."""
    hw = tf.tile(tf.cast(image_hw, tf.float32), [2])
    start = tf.tile(window[:2], [2])
    extent = tf.tile(window[2:] - window[:2], [2])
    return (boxes * hw - start) / extent


def to_image_boxes(boxes: tf.Tensor, image_hw: tf.Tensor, window: tf.Tensor,
                   clip: bool = True) -> tf.Tensor:
    """The inverse of `to_window_boxes`: boxes normalized to the window -> to the image."""
    hw = tf.tile(tf.cast(image_hw, tf.float32), [2])
    window = tf.cast(window, tf.float32)
    start = tf.tile(window[:2], [2])
    extent = tf.tile(window[2:] - window[:2], [2])
    boxes = (tf.cast(boxes, tf.float32) * extent + start) / hw
    return tf.clip_by_value(boxes, 0.0, 1.0) if clip else boxes


def to_image_boxes_numpy(boxes: np.ndarray, image_hw: np.ndarray,
                         window: np.ndarray) -> np.ndarray:
    """`to_image_boxes` (clipped) in NumPy, for one image's detections outside a graph."""
    window = np.asarray(window, np.float32)
    start, extent = np.tile(window[:2], 2), np.tile(window[2:] - window[:2], 2)
    hw = np.tile(np.asarray(image_hw, np.float32), 2)
    return np.clip((np.asarray(boxes, np.float32) * extent + start) / hw, 0.0, 1.0)


def to_pixels(boxes: np.ndarray, window: np.ndarray, image_hw: np.ndarray) -> np.ndarray:
    """Boxes normalized to the model input -> pixels of the original image, clipped to it."""
    height, width = image_hw
    return to_image_boxes_numpy(boxes, image_hw, window) * [height, width, height, width]


def letterbox_image(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The whole image in the model-size square (float32), and the letterbox window used."""
    window = letterbox_window(tf.shape(image)[:2])
    return crop_resize(image, window, size), window
