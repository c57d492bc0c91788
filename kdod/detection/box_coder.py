"""Faster R-CNN box coding, as the TF Object Detection API's FasterRcnnBoxCoder.

A box is encoded against an anchor as ``(ty, tx, th, tw)``::

    ty = (y_centre - y_centre_anchor) / anchor_height * scale_factors[0]
    tx = (x_centre - x_centre_anchor) / anchor_width  * scale_factors[1]
    th = log(height / anchor_height)                  * scale_factors[2]
    tw = log(width / anchor_width)                    * scale_factors[3]

Boxes and anchors are ``(ymin, xmin, ymax, xmax)`` and broadcast against each other, so
anchors [A, 4] serve boxes [B, A, 4].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

DEFAULT_SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)
EPSILON = 1e-8  # Keeps log() and divisions finite for zero-size boxes, as the TF OD API.
# Largest log-size change decode accepts, so exp() cannot overflow on wild predictions.
MAX_LOG_SIZE_RATIO = math.log(1000.0 / 16)


def _centres_and_sizes(boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return (ymin + ymax) / 2, (xmin + xmax) / 2, ymax - ymin, xmax - xmin


def encode(boxes: tf.Tensor, anchors: tf.Tensor,
           scale_factors: Sequence[float] = DEFAULT_SCALE_FACTORS) -> tf.Tensor:
    """Relative codes [..., 4] (ty, tx, th, tw) of `boxes` against `anchors`."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    y, x, h, w = _centres_and_sizes(boxes)
    ya, xa, ha, wa = _centres_and_sizes(anchors)
    ha, wa, h, w = ha + EPSILON, wa + EPSILON, h + EPSILON, w + EPSILON
    sy, sx, sh, sw = scale_factors
    return tf.stack([(y - ya) / ha * sy, (x - xa) / wa * sx,
                     tf.math.log(h / ha) * sh, tf.math.log(w / wa) * sw], axis=-1)


def decode(rel_codes: tf.Tensor, anchors: tf.Tensor,
           scale_factors: Sequence[float] = DEFAULT_SCALE_FACTORS) -> tf.Tensor:
    """Boxes [..., 4] (ymin, xmin, ymax, xmax) from relative codes against `anchors`."""
    rel_codes = tf.convert_to_tensor(rel_codes, tf.float32)
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    ya, xa, ha, wa = _centres_and_sizes(anchors)
    ha, wa = ha + EPSILON, wa + EPSILON
    ty, tx, th, tw = tf.unstack(rel_codes, 4, axis=-1)
    sy, sx, sh, sw = scale_factors
    y = ty / sy * ha + ya
    x = tx / sx * wa + xa
    h = tf.exp(tf.minimum(th / sh, MAX_LOG_SIZE_RATIO)) * ha
    w = tf.exp(tf.minimum(tw / sw, MAX_LOG_SIZE_RATIO)) * wa
    return tf.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], axis=-1)
