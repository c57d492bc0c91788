"""Box-aware geometry and colour augmentation, all in the TensorFlow graph.

Geometry is one `tf.image.crop_and_resize` per image: a square window (in the
source image's pixels) is cut, zoomed and padded to the model size at once, so
the aspect ratio of plates is never distorted. For evaluation the window is the
letterbox square ``[0, max(H, W)]`` anchored top-left; for training its side is
``max(H, W) * scale`` with a random scale and position.

Box rule after a crop: a box is kept when at least ``min_visible`` of its area
lies inside the window and its clipped sides are at least ``min_size`` output
pixels; kept boxes are clipped to the window, the others dropped.

A mosaic (YOLOv4's, with ``mosaic_prob``) joins four augmented examples into one: the output
is split in four at a random centre and each quarter is a crop of one example at its own scale,
so plates keep their size and each training image holds the plates and backgrounds of four
photographs. The box rule above applies within each quarter.

Randomness is stateless, driven by a per-example seed, so a pipeline with a
fixed seed yields the same augmentations however many threads run it.
"""

from __future__ import annotations

import dataclasses
import math

import gin
import tensorflow as tf

from kdod.config import ConfigError, check_integer, check_number
from kdod.data import geometry


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training augmentation; gin: ``Augmentation.max_scale = 1.6`` etc."""

    min_scale: float = 0.6  # Window side / max(H, W): < 1 zooms in (crops), > 1 zooms out (pads).
    max_scale: float = 1.4
    flip_prob: float = 0.5
    brightness: float = 0.15  # Max delta, images in [0, 1].
    contrast: float = 0.3  # Factor drawn from [1 - contrast, 1 + contrast].
    saturation: float = 0.3
    hue: float = 0.03
    min_visible: float = 0.4
    min_size: float = 2.0  # Output pixels.
    # Camera degradations of real photographs (off by default): Gaussian blur of a sigma drawn
    # from (0, max_blur_sigma] output pixels, and JPEG re-compression at a quality drawn from
    # [min_jpeg_quality, 95], each applied with its probability.
    blur_prob: float = 0.0
    max_blur_sigma: float = 1.5
    jpeg_prob: float = 0.0
    min_jpeg_quality: int = 30
    # Small camera tilts (off by default): with warp_prob, a rotation of up to max_rotation
    # degrees and a perspective tilt of up to max_perspective (the projective coefficient times
    # the output size: 0.1 makes one side about 10% shorter than the other), about the centre.
    # Boxes become the axis-aligned boxes around their warped corners.
    warp_prob: float = 0.0
    max_rotation: float = 5.0
    max_perspective: float = 0.1
    # With mosaic_prob, a training example is a mosaic of four (off by default; see above).
    mosaic_prob: float = 0.0
    # YOLOv8's close_mosaic: with mosaic_batches, only the first that many training batches may
    # hold mosaics and the rest are whole photographs, as the test images are (None: mosaics
    # throughout). Counted in the run's steps: a resumed run reads on where it stopped.
    mosaic_batches: int | None = None

    def __post_init__(self):
        check_number("Augmentation.min_scale", self.min_scale, above=0)
        check_number("Augmentation.max_scale", self.max_scale, above=0)
        if self.min_scale > self.max_scale:
            raise ConfigError(f"Augmentation needs min_scale <= max_scale, got "
                              f"{self.min_scale}, {self.max_scale}.")
        # Upper bounds: probabilities, factors 1 +- x that stay >= 0, TensorFlow's hue limit.
        for name, most in (("flip_prob", 1), ("min_visible", 1), ("blur_prob", 1),
                           ("jpeg_prob", 1), ("warp_prob", 1), ("mosaic_prob", 1),
                           ("max_rotation", 45), ("max_perspective", 0.5), ("contrast", 1),
                           ("saturation", 1), ("hue", 0.5), ("brightness", None),
                           ("min_size", None)):
            check_number(f"Augmentation.{name}", getattr(self, name), at_least=0, at_most=most)
        check_number("Augmentation.max_blur_sigma", self.max_blur_sigma, above=0)
        check_integer("Augmentation.min_jpeg_quality", self.min_jpeg_quality, 1, 95)
        if self.mosaic_batches is not None:
            check_integer("Augmentation.mosaic_batches", self.mosaic_batches, minimum=0)


def random_window(image_hw: tf.Tensor, seed: tf.Tensor, min_scale: float,
                  max_scale: float) -> tf.Tensor:
    """A random square window; it lies inside the image on an axis where it fits, else covers it."""
    scale_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    hw = tf.cast(image_hw, tf.float32)
    side = tf.reduce_max(hw) * tf.random.stateless_uniform([], scale_seed, min_scale, max_scale)
    slack = hw - side  # >= 0: room to slide inside the image; < 0: the image fits inside.
    offset = tf.minimum(slack, 0.0) + tf.random.stateless_uniform([2], offset_seed) * tf.abs(slack)
    return tf.concat([offset, offset + side], axis=0)


def keep_visible(boxes: tf.Tensor, labels: tf.Tensor, size: int, min_visible: float,
                 min_size: float, region: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Clips boxes to [0, 1] (or to the normalized `region` ymin, xmin, ymax, xmax) and drops
    those mostly outside or too small (the module's rule)."""
    region = tf.constant([0.0, 0.0, 1.0, 1.0]) if region is None else region
    clipped = tf.clip_by_value(boxes, tf.tile(region[:2], [2]), tf.tile(region[2:], [2]))
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    sides = (clipped[:, 2:] - clipped[:, :2]) * size
    visible = sides[:, 0] * sides[:, 1] / (size * size)
    keep = (visible >= min_visible * area) & tf.reduce_all(sides >= min_size, axis=1)
    return tf.boolean_mask(clipped, keep), tf.boolean_mask(labels, keep)


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Normalized boxes of the left-right mirrored image."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)


def jitter_colour(image: tf.Tensor, seed: tf.Tensor, config: Augmentation) -> tf.Tensor:
    """Brightness, contrast, saturation and hue jitter on a [0, 255] float image."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    image = image / 255.0
    if config.brightness:
        image = tf.image.stateless_random_brightness(image, config.brightness, seeds[0])
    if config.contrast:
        image = tf.image.stateless_random_contrast(
            image, 1 - config.contrast, 1 + config.contrast, seeds[1])
    if config.saturation:
        image = tf.image.stateless_random_saturation(
            image, 1 - config.saturation, 1 + config.saturation, seeds[2])
    if config.hue:
        image = tf.image.stateless_random_hue(image, config.hue, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0) * 255.0


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int = 4) -> tf.Tensor:
    """Separable Gaussian blur of a [H, W, 3] float image (edges repeat their pixels)."""
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel /= tf.reduce_sum(kernel)
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                    mode="SYMMETRIC")
    rows = tf.tile(tf.reshape(kernel, [-1, 1, 1, 1]), [1, 1, 3, 1])
    columns = tf.tile(tf.reshape(kernel, [1, -1, 1, 1]), [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(blurred, columns, [1, 1, 1, 1], "VALID")[0]


def degrade(image: tf.Tensor, seed: tf.Tensor, config: Augmentation,
            zoom: float = 1.0) -> tf.Tensor:
    """Blur and JPEG re-compression of a [0, 255] float image, each with its probability.

    `zoom`: the image's size over the size the blur is drawn for (a teacher's image of the
    same view at twice the size is blurred twice as wide)."""
    blur_seed, sigma_seed, jpeg_seed, quality_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    if config.blur_prob:
        sigma = zoom * tf.random.stateless_uniform([], sigma_seed, 0.3, config.max_blur_sigma)
        blur = tf.random.stateless_uniform([], blur_seed) < config.blur_prob
        radius = math.ceil(4 * zoom)
        image = tf.cond(blur, lambda: gaussian_blur(image, sigma, radius), lambda: image)
    if config.jpeg_prob:
        jpeg = tf.random.stateless_uniform([], jpeg_seed) < config.jpeg_prob
        image = tf.cond(jpeg, lambda: 255.0 * tf.image.stateless_random_jpeg_quality(
            image / 255.0, config.min_jpeg_quality, 95, quality_seed), lambda: image)
    return image


def random_tilt(seed: tf.Tensor, size: int, max_rotation: float,
                max_perspective: float) -> tf.Tensor:
    """A random 3x3 projective map of output pixels (x, y, 1) -> (x', y', w): a rotation of up
    to +-max_rotation degrees and a perspective tilt about the centre of a size x size image."""
    angle_seed, tilt_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    angle = tf.random.stateless_uniform([], angle_seed, -max_rotation, max_rotation) * (
        3.141592653589793 / 180)
    tilt = tf.random.stateless_uniform([2], tilt_seed, -max_perspective, max_perspective) / size
    cos, sin, centre = tf.cos(angle), tf.sin(angle), size / 2
    rotation = tf.stack([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    perspective = tf.stack([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [tilt[0], tilt[1], 1.0]])
    to_centre = tf.constant([[1.0, 0.0, -centre], [0.0, 1.0, -centre], [0.0, 0.0, 1.0]])
    back = tf.constant([[1.0, 0.0, centre], [0.0, 1.0, centre], [0.0, 0.0, 1.0]])
    return back @ perspective @ rotation @ to_centre


def warp(image: tf.Tensor, boxes: tf.Tensor, matrix: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """`image` [S, S, 3] warped by the projective `matrix` (pixels (x, y, 1) -> (x', y', w)),
    the area around it black; each box becomes the box around its four warped corners."""
    size = tf.shape(image)[0]
    inverse = tf.linalg.inv(matrix)  # The op samples the source at inverse(output pixel).
    inverse /= inverse[2, 2]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.reshape(inverse, [9])[None, :8],
        output_shape=tf.stack([size, size]), fill_value=0.0, interpolation="BILINEAR",
        fill_mode="CONSTANT")[0]
    scale = tf.cast(size, tf.float32)
    ymin, xmin, ymax, xmax = tf.unstack(boxes * scale, axis=1)
    xs, ys = tf.stack([xmin, xmax, xmax, xmin], 1), tf.stack([ymin, ymin, ymax, ymax], 1)
    corners = tf.einsum("ij,njk->nik", matrix, tf.stack([xs, ys, tf.ones_like(xs)], axis=1))
    x, y = corners[:, 0] / corners[:, 2], corners[:, 1] / corners[:, 2]
    around = tf.stack([tf.reduce_min(y, 1), tf.reduce_min(x, 1), tf.reduce_max(y, 1),
                       tf.reduce_max(x, 1)], axis=1)
    return warped, around / scale


def augment(example: dict, seed: tf.Tensor, size: int, config: Augmentation,
            teacher_size: int | None = None) -> dict:
    """Random zoom/crop/pad, tilt, flip, colour jitter and camera degradations; boxes follow
    the pixels.

    With `teacher_size`, also "teacher_image": the same view of the source image with the same
    random draws at `teacher_size` (for a teacher of another input size), its own resampling of
    the source, not an upscaled copy of "image"; the boxes, normalized, are those of both."""
    window_seed, flip_seed, colour_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    # Folded in, not split: the seeds of the other stages stay what they were before these.
    degrade_seed = tf.random.experimental.stateless_fold_in(seed, 3)
    tilt_seed, apply_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 4), 2))
    image_hw = tf.shape(example["image"])[:2]
    window = random_window(image_hw, window_seed, config.min_scale, config.max_scale)
    boxes = geometry.to_window_boxes(example["boxes"], image_hw, window)
    tilt = bool(config.warp_prob) and (
        tf.random.stateless_uniform([], apply_seed) < config.warp_prob)
    flip = bool(config.flip_prob) and tf.random.stateless_uniform([], flip_seed) < config.flip_prob

    def view(out_size: int, boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The augmented image at `out_size` and the boxes warped with it (before the flip)."""
        image = geometry.crop_resize(example["image"], window, out_size)
        if config.warp_prob:
            # random_tilt at another size is the same tilt, conjugated by the zoom.
            matrix = random_tilt(tilt_seed, out_size, config.max_rotation, config.max_perspective)
            image, boxes = tf.cond(tilt, lambda: warp(image, boxes, matrix),
                                   lambda: (image, boxes))
        return image, boxes

    def finish(image: tf.Tensor, out_size: int) -> tf.Tensor:
        if config.flip_prob:
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
        return degrade(jitter_colour(image, colour_seed, config), degrade_seed, config,
                       zoom=out_size / size)

    image, boxes = view(size, boxes)
    boxes, labels = keep_visible(boxes, example["labels"], size, config.min_visible,
                                 config.min_size)
    if config.flip_prob:
        boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
    augmented = {**example, "image": finish(image, size), "boxes": boxes, "labels": labels,
                 "window": window}
    if teacher_size:
        augmented["teacher_image"] = finish(view(teacher_size, boxes)[0], teacher_size)
    return augmented


def letterbox(example: dict, size: int) -> dict:
    """Evaluation geometry: the whole image, aspect kept, padded at the bottom/right."""
    image, window = geometry.letterbox_image(example["image"], size)
    boxes = geometry.to_window_boxes(example["boxes"], tf.shape(example["image"])[:2], window)
    return {**example, "image": image, "boxes": boxes, "window": window}


def mosaic(tiles: dict, seed: tf.Tensor, size: int, config: Augmentation) -> dict:
    """Four augmented examples (`tiles`, stacked; boxes ragged) as one mosaic, with probability
    `config.mosaic_prob` (else the first example as it is).

    The output is cut at a random centre (each coordinate within the middle half) into four
    quarters; quarter k is a crop of tile k at its own scale, from a random place in the tile,
    and tile k's boxes follow it by the module's rule within the quarter. A "teacher_image"
    (at a multiple of `size`) is cut the same way. The other keys (filename, window, ...) are
    the first example's."""
    # Folded in: the pipeline's per-example seeds drive the examples' own augmentation.
    centre_seed, place_seed, apply_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 5), 3))
    first = {key: value[0] for key, value in tiles.items()}
    centre = tf.cast(tf.round(tf.random.stateless_uniform([2], centre_seed, 0.25, 0.75) * size),
                     tf.int32)
    cy, cx = centre[0], centre[1]
    starts = tf.stack([[0, 0], [0, cx], [cy, 0], [cy, cx]])  # Quarters: (y, x) in the output.
    sides = tf.stack([[cy, cx], [cy, size - cx], [size - cy, cx], [size - cy, size - cx]])
    # Where each quarter is cut from in its tile: anywhere it fits.
    froms = tf.cast(tf.random.stateless_uniform([4, 2], place_seed) *
                    tf.cast(size - sides + 1, tf.float32), tf.int32)
    froms = tf.minimum(froms, size - sides)

    def join(images: tf.Tensor) -> tf.Tensor:
        """The four tiles' quarters of `images` [4, S*r, S*r, C] in one image."""
        ratio = images.shape[1] // size
        quarters = []
        for k in range(4):
            (h, w), (fy, fx) = [tf.unstack(ratio * t[k]) for t in (sides, froms)]
            quarters.append(images[k, fy:fy + h, fx:fx + w])
        rows = [tf.concat(quarters[:2], axis=1), tf.concat(quarters[2:], axis=1)]
        full = ratio * size
        return tf.ensure_shape(tf.concat(rows, axis=0), [full, full, images.shape[-1]])

    def boxes_of(k: int) -> tuple[tf.Tensor, tf.Tensor]:
        shift = tf.cast(tf.tile(starts[k] - froms[k], [2]), tf.float32) / size
        region = tf.cast(tf.concat([starts[k], starts[k] + sides[k]], 0), tf.float32) / size
        return keep_visible(tiles["boxes"][k] + shift, tiles["labels"][k], size,
                            config.min_visible, config.min_size, region)

    def joined() -> dict:
        kept = [boxes_of(k) for k in range(4)]
        out = {**first, "boxes": tf.concat([b for b, _ in kept], 0),
               "labels": tf.concat([labels for _, labels in kept], 0)}
        for key in ("image", "teacher_image"):
            if key in tiles:
                out[key] = join(tiles[key])
        return out

    use = tf.random.stateless_uniform([], apply_seed) < config.mosaic_prob
    return tf.cond(use, joined, lambda: first)
