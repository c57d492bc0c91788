"""Faster R-CNN box coding, as the TF Object Detection API's FasterRcnnBoxCoder.

A box is encoded against an anchor as ``(ty, tx, th, tw)``::

    ty = (y_centre - y_centre_anchor) / anchor_height * scale_factors[0]
    tx = (x_centre - x_centre_anchor) / anchor_width  * scale_factors[1]
    th = log(height / anchor_height)                  * scale_factors[2]
    tw = log(width / anchor_width)                    * scale_factors[3]

Boxes and anchors are ``(ymin, xmin, ymax, xmax)`` and broadcast against each other, so
anchors [A, 4] serve boxes [B, A, 4].

A detector with a distribution box head (``DetectorConfig.box_bins = n``, GFL style) predicts
instead the distances from the anchor centre to the box's four sides ``(top, left, bottom,
right)``, in anchor heights (top, bottom) and widths (left, right), each as a distribution over
the n + 1 values ``0, D/n, ..., D`` with ``D = MAX_SIDE_DISTANCE``; ``side_distances`` and
``sides_to_codes`` go between those distances, boxes and the codes above::

    ty = (bottom - top) / 2 * scale_factors[0]    th = log(top + bottom) * scale_factors[2]
    tx = (right - left) / 2 * scale_factors[1]    tw = log(left + right) * scale_factors[3]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

DEFAULT_SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)
EPSILON = 1e-8  # Keeps log() and divisions finite for zero-size boxes, as the TF OD API.
# Largest log-size change decode accepts, so exp() cannot overflow on wild predictions.
MAX_LOG_SIZE_RATIO = math.log(1000.0 / 16)
# Largest side distance a distribution box head represents, in anchor sizes: a box up to 4x
# its anchor when centred on it. Matched boxes (IoU >= 0.5 with their anchor) lie within 2x.
MAX_SIDE_DISTANCE = 2.0


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


def bin_distances(bins: int) -> tf.Tensor:
    """The n + 1 side distances [0, D/n, ..., D] (D = MAX_SIDE_DISTANCE) of `bins` = n."""
    return tf.linspace(0.0, MAX_SIDE_DISTANCE, bins + 1)


def side_distances(boxes: tf.Tensor, anchors: tf.Tensor) -> tf.Tensor:
    """Distances [..., 4] (top, left, bottom, right) from the anchor centres to the box sides,
    in anchor heights and widths; negative where the centre lies outside the box."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    ya, xa, ha, wa = _centres_and_sizes(tf.convert_to_tensor(anchors, tf.float32))
    ha, wa = ha + EPSILON, wa + EPSILON
    ymin, xmin, ymax, xmax = tf.unstack(boxes, 4, axis=-1)
    return tf.stack([(ya - ymin) / ha, (xa - xmin) / wa, (ymax - ya) / ha, (xmax - xa) / wa],
                    axis=-1)


def sides_to_codes(distances: tf.Tensor,
                   scale_factors: Sequence[float] = DEFAULT_SCALE_FACTORS) -> tf.Tensor:
    """The relative codes [..., 4] (ty, tx, th, tw) of the box at side `distances` [..., 4]."""
    top, left, bottom, right = tf.unstack(tf.convert_to_tensor(distances, tf.float32), 4, axis=-1)
    sy, sx, sh, sw = scale_factors
    return tf.stack([(bottom - top) / 2 * sy, (right - left) / 2 * sx,
                     tf.math.log(top + bottom + EPSILON) * sh,
                     tf.math.log(left + right + EPSILON) * sw], axis=-1)
