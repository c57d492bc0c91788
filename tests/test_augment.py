"""The input pipeline keeps boxes on the pixels they describe."""

import numpy as np
import pytest
import tensorflow as tf

from kdod.config import ConfigError
from kdod.data import augment, pipeline

NO_COLOUR = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def _known_image(height=180, width=300, rect=(40, 90, 70, 200)):
    """A dark image with one bright rectangle, and that rectangle's normalized box."""
    image = np.full((height, width, 3), 20, np.uint8)
    y0, x0, y1, x1 = rect
    image[y0:y1, x0:x1] = 230
    box = np.array([[y0 / height, x0 / width, y1 / height, x1 / width]], np.float32)
    return {"image": tf.constant(image), "boxes": tf.constant(box),
            "labels": tf.constant([0], tf.int32)}


def _bright_extent(image: np.ndarray) -> np.ndarray:
    """Normalized extent (ymin, xmin, ymax, xmax) of pixels brighter than mid-grey."""
    ys, xs = np.nonzero(image.mean(axis=-1) > 125)
    size = image.shape[0]
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]) / size


@pytest.mark.parametrize("seed", range(12))
def test_augmented_boxes_follow_pixels(seed):
    config = augment.Augmentation(min_scale=0.5, max_scale=1.5, min_visible=1.0, **NO_COLOUR)
    out = augment.augment(_known_image(), tf.constant([seed, 7]), 96, config)
    boxes = out["boxes"].numpy()
    if len(boxes) == 0:  # The window cut the rectangle: check it really left the image.
        assert not (out["image"].numpy().mean(axis=-1) > 200).all(axis=None)
        return
    np.testing.assert_allclose(boxes[0], _bright_extent(out["image"].numpy()), atol=1.5 / 96)


def test_letterbox_keeps_aspect_and_boxes():
    out = augment.letterbox(_known_image(), 150)  # 300 px wide -> scale 0.5, pad below.
    image = out["image"].numpy()
    np.testing.assert_allclose(out["boxes"].numpy()[0], _bright_extent(image), atol=1 / 150)
    np.testing.assert_allclose(out["boxes"].numpy()[0], [20 / 150, 45 / 150, 35 / 150, 100 / 150])
    assert image[91:].max() == 0  # 180 px high -> 90 rows of image, then padding.


def test_flip_mirrors_boxes():
    example = _known_image()
    config = augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=1.0, **NO_COLOUR)
    out = augment.augment(example, tf.constant([1, 2]), 100, config)
    np.testing.assert_allclose(out["boxes"].numpy()[0], _bright_extent(out["image"].numpy()),
                               atol=1.5 / 100)
    assert out["boxes"].numpy()[0][1] > 1 - 200 / 300 - 0.02  # Mirrored: xmin = 1 - old xmax.


def test_boxes_mostly_outside_are_dropped_and_others_clipped():
    boxes = tf.constant([[0.1, 0.1, 0.3, 0.3],     # inside: kept
                         [0.5, 0.9, 0.6, 1.2],     # a third visible: dropped at 0.4
                         [-0.1, 0.2, 0.2, 0.4],    # two thirds visible: clipped
                         [0.5, 0.5, 0.5, 0.7]],    # degenerate: dropped
                        tf.float32)
    kept, labels = augment.keep_visible(boxes, tf.constant([0, 1, 2, 3]), 100, 0.4, 2.0)
    np.testing.assert_allclose(kept.numpy(), [[0.1, 0.1, 0.3, 0.3], [0.0, 0.2, 0.2, 0.4]])
    assert labels.numpy().tolist() == [0, 2]


def test_augmentation_is_deterministic_per_seed():
    config = augment.Augmentation()
    first = augment.augment(_known_image(), tf.constant([3, 4]), 64, config)
    again = augment.augment(_known_image(), tf.constant([3, 4]), 64, config)
    other = augment.augment(_known_image(), tf.constant([5, 4]), 64, config)
    np.testing.assert_array_equal(first["image"].numpy(), again["image"].numpy())
    assert not np.array_equal(first["image"].numpy(), other["image"].numpy())


def test_bad_augmentation_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="min_scale"):
        augment.Augmentation(min_scale=2.0, max_scale=1.0)


def test_too_many_boxes_is_an_error_naming_the_setting():
    example = {"image": tf.zeros([4, 4, 3]), "boxes": tf.zeros([3, 4]),
               "labels": tf.zeros([3], tf.int32)}
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_boxes=2"):
        pipeline.pad_boxes(example, 2)


def test_mix_follows_weights():
    a = tf.data.Dataset.from_tensors(0)
    b = tf.data.Dataset.from_tensors(1)
    draws = list(pipeline.mix([a, b], [3.0, 1.0], seed=0).take(2000).as_numpy_iterator())
    assert 0.70 < 1 - np.mean(draws) < 0.80


def test_large_images_are_area_averaged_not_aliased():
    """Stripes 0, 0, 255 (mean 85) shrunk 20x: point sampling would land on the zeros."""
    stripes = np.tile(np.array([0, 0, 255], np.uint8), 400)[:1000]
    image = np.repeat(np.repeat(stripes[None, :, None], 1000, axis=0), 3, axis=2)
    example = {"image": tf.constant(image), "boxes": tf.zeros([0, 4]),
               "labels": tf.zeros([0], tf.int32)}
    out = augment.letterbox(example, 50)["image"].numpy()
    assert abs(out.mean() - 85) < 5 and out.std() < 10


def test_camera_degradations_change_pixels_not_boxes():
    example = _known_image()
    plain = augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=0.0, **NO_COLOUR)
    degraded = augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=0.0, blur_prob=1.0,
                                    max_blur_sigma=2.0, jpeg_prob=1.0, **NO_COLOUR)
    seed = tf.constant([3, 4])
    before, after = (augment.augment(example, seed, 100, c) for c in (plain, degraded))
    np.testing.assert_array_equal(after["boxes"], before["boxes"])
    difference = np.abs(after["image"].numpy() - before["image"].numpy())
    assert difference.mean() > 1.0  # Blurred edges and JPEG artefacts.
    np.testing.assert_allclose(after["image"].numpy().mean(), before["image"].numpy().mean(),
                               rtol=0.05)  # Blur and JPEG keep the brightness.


def test_gaussian_blur_keeps_a_flat_image_and_spreads_an_edge():
    flat = tf.fill([9, 9, 3], 100.0)
    np.testing.assert_allclose(augment.gaussian_blur(flat, tf.constant(1.0)), flat, atol=1e-3)
    step = tf.concat([tf.zeros([9, 5, 3]), tf.fill([9, 4, 3], 255.0)], axis=1)
    row = augment.gaussian_blur(step, tf.constant(1.0)).numpy()[4, :, 0]
    assert 0 < row[4] < row[5] < 255 and np.all(np.diff(row) >= -1e-3)


def test_a_quarter_turn_moves_pixels_and_boxes_alike():
    image = np.zeros([8, 8, 3], np.float32)
    image[1:3, 4:7] = 255.0  # Rows 1-2, columns 4-6: box (1, 4, 3, 7) / 8.
    box = tf.constant([[1 / 8, 4 / 8, 3 / 8, 7 / 8]])
    # 90 degrees about the centre (4, 4): (x, y) -> (8 - y, x), so the columns 4..7 become the
    # rows 4..7 and the rows 1..3 the columns 5..7.
    matrix = tf.constant([[0.0, -1.0, 8.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    warped, boxes = augment.warp(tf.constant(image), box, matrix)
    np.testing.assert_allclose(boxes.numpy(), [[4 / 8, 5 / 8, 7 / 8, 7 / 8]], atol=1e-6)
    np.testing.assert_allclose(_bright_extent(warped.numpy()), boxes[0], atol=1 / 8)


def test_the_identity_tilt_changes_nothing():
    image = tf.random.uniform([16, 16, 3], 0, 255)
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.9]])
    warped, same = augment.warp(image, boxes, augment.random_tilt(tf.constant([1, 2]), 16, 0, 0))
    np.testing.assert_allclose(warped, image, atol=1e-3)
    np.testing.assert_allclose(same, boxes, atol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_tilted_boxes_hold_their_pixels(seed):
    config = augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=0.0, warp_prob=1.0,
                                  max_rotation=10.0, max_perspective=0.2, min_visible=0.99,
                                  **NO_COLOUR)
    out = augment.augment(_known_image(), tf.constant([seed, 5]), 96, config)
    box, extent = out["boxes"].numpy()[0], _bright_extent(out["image"].numpy())
    # The box is the one around the warped rectangle's corners: it holds every bright pixel,
    # and at these angles is at most a few pixels larger.
    assert np.all(box[:2] <= extent[:2] + 1 / 96) and np.all(box[2:] >= extent[2:] - 1 / 96)
    np.testing.assert_allclose(box, extent, atol=4 / 96)
    plain = augment.augment(_known_image(), tf.constant([seed, 5]), 96,
                            augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=0.0,
                                                 **NO_COLOUR))
    assert np.abs(out["image"].numpy() - plain["image"].numpy()).mean() > 1.0


def _smooth_image(height=150, width=240):
    """Smooth colour waves (no detail finer than a few pixels) and one box."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([127 + 100 * np.sin(x / 13), 127 + 100 * np.cos(y / 11),
                      127 + 60 * np.sin((x + y) / 17)], axis=-1)
    return {"image": tf.constant(image.astype(np.uint8)),
            "boxes": tf.constant([[0.2, 0.2, 0.4, 0.6]]), "labels": tf.constant([0])}


@pytest.mark.parametrize("seed", range(4))
def test_the_teacher_image_is_the_same_view_at_its_own_size(seed):
    # JPEG left out: its 8x8 blocks cover other pixels at another size.
    config = augment.Augmentation(warp_prob=0.5, blur_prob=0.5, flip_prob=0.5)
    alone = augment.augment(_smooth_image(), tf.constant([seed, 3]), 80, config)
    out = augment.augment(_smooth_image(), tf.constant([seed, 3]), 80, config, teacher_size=160)
    for key in ("image", "boxes", "labels", "window"):  # The student's view is untouched.
        np.testing.assert_array_equal(out[key].numpy(), alone[key].numpy())
    assert out["teacher_image"].shape == (160, 160, 3)
    halved = tf.image.resize(out["teacher_image"], [80, 80], antialias=True).numpy()
    assert np.abs(halved - out["image"].numpy()).mean() < 3.0  # Grey levels of 255.


def test_the_teacher_image_is_resampled_from_the_source_not_upscaled():
    """Detail that the student's size cannot hold survives in the teacher's view."""
    image = np.zeros((160, 160, 3), np.uint8)
    image[:, ::2] = 255  # Stripes of one pixel: averaged away at 80 px, kept at 160.
    example = {"image": tf.constant(image), "boxes": tf.constant([[0.1, 0.1, 0.5, 0.5]]),
               "labels": tf.constant([0])}
    config = augment.Augmentation(min_scale=1.0, max_scale=1.0, flip_prob=0.0, **NO_COLOUR)
    out = augment.augment(example, tf.constant([0, 1]), 80, config, teacher_size=160)
    assert out["image"].numpy().std() < 5
    assert out["teacher_image"].numpy().std() > 100


def _position_tiles(size: int, boxes: list) -> dict:
    """Four tiles whose pixels say where they come from: (row, column, 60 * tile), and a box
    on each."""
    rows, columns = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    images = np.stack([np.stack([rows, columns, np.full_like(rows, 60 * k)], axis=-1)
                       for k in range(4)]).astype(np.float32)
    return {"image": tf.constant(images),
            "boxes": tf.ragged.constant([[b] for b in boxes], ragged_rank=1, inner_shape=(4,)),
            "labels": tf.ragged.constant([[k] for k in range(4)]),
            "filename": tf.constant([b"a", b"b", b"c", b"d"])}


@pytest.mark.parametrize("seed", range(6))
def test_mosaic_quarters_are_crops_of_the_tiles_and_their_boxes_follow(seed):
    size = 96
    tile_boxes = [[0.1, 0.1, 0.3, 0.4], [0.5, 0.5, 0.7, 0.9], [0.2, 0.6, 0.5, 0.8],
                  [0.4, 0.2, 0.6, 0.5]]
    config = augment.Augmentation(mosaic_prob=1.0, min_visible=0.4, min_size=2.0)
    out = augment.mosaic(_position_tiles(size, tile_boxes), tf.constant([seed, 9]), size, config)
    image = out["image"].numpy()
    tile = np.round(image[..., 2] / 60).astype(int)
    # Four rectangles meeting at one centre in the middle half of the image.
    cy, cx = int(np.argmax(tile[:, 0] == 2)), int(np.argmax(tile[0] == 1))
    assert size / 4 - 1 <= cy <= 3 * size / 4 + 1 and size / 4 - 1 <= cx <= 3 * size / 4 + 1
    expected_tiles = np.zeros((size, size), int)
    expected_tiles[:cy, cx:], expected_tiles[cy:, :cx], expected_tiles[cy:, cx:] = 1, 2, 3
    np.testing.assert_array_equal(tile, expected_tiles)
    quarters = [(0, 0, cy, cx), (0, cx, cy, size), (cy, 0, size, cx), (cy, cx, size, size)]
    expected_boxes, expected_labels = [], []
    for k, (y0, x0, y1, x1) in enumerate(quarters):
        # Each quarter is its tile shifted by one offset, at the tile's scale.
        shift = image[y0:y1, x0:x1, :2] - np.stack(np.meshgrid(
            np.arange(y0, y1), np.arange(x0, x1), indexing="ij"), axis=-1)
        assert np.ptp(shift[..., 0]) == 0 and np.ptp(shift[..., 1]) == 0
        dy, dx = shift[0, 0]
        box = np.array(tile_boxes[k]) - np.array([dy, dx, dy, dx]) / size
        clipped = np.clip(box, [y0 / size, x0 / size] * 2, [y1 / size, x1 / size] * 2)
        sides = (clipped[2:] - clipped[:2]) * size
        area = (box[2] - box[0]) * (box[3] - box[1]) * size * size
        if sides.min() >= 2.0 and sides.prod() >= 0.4 * area:
            expected_boxes.append(clipped)
            expected_labels.append(k)
    np.testing.assert_allclose(out["boxes"].numpy().reshape(-1, 4),
                               np.reshape(expected_boxes, (-1, 4)), atol=1e-5)
    np.testing.assert_array_equal(out["labels"].numpy(), expected_labels)
    assert out["filename"].numpy() == b"a"  # The other keys are the first tile's.


def test_mosaic_prob_zero_gives_the_first_tile_and_the_teacher_image_is_cut_alike():
    size, boxes = 48, [[0.1, 0.1, 0.3, 0.4]] * 4
    tiles = _position_tiles(size, boxes)
    first = augment.mosaic(tiles, tf.constant([1, 2]), size, augment.Augmentation())
    np.testing.assert_array_equal(first["image"].numpy(), tiles["image"][0].numpy())
    np.testing.assert_allclose(first["boxes"].numpy(), [boxes[0]], atol=1e-7)
    # The teacher's view at twice the size: the same quarters, each pixel doubled.
    tiles["teacher_image"] = tf.repeat(tf.repeat(tiles["image"], 2, axis=1), 2, axis=2)
    out = augment.mosaic(tiles, tf.constant([1, 2]), size, augment.Augmentation(mosaic_prob=1.0))
    np.testing.assert_array_equal(out["teacher_image"].numpy()[::2, ::2], out["image"].numpy())


def test_mosaic_with_a_teacher_of_another_size_ratio_is_a_clear_error():
    examples = tf.data.Dataset.from_tensors({"image": tf.zeros([64, 64, 3])})
    with pytest.raises(ConfigError, match="multiple of the student"):
        pipeline.mosaics(examples, 64, augment.Augmentation(mosaic_prob=1.0), 96)


def test_the_training_pipeline_makes_mosaics_deterministically(tiny_data_dir):
    def batch(mosaic_prob: float) -> dict:
        config = augment.Augmentation(mosaic_prob=mosaic_prob)
        batches = pipeline.input_pipeline([("synthetic_plates/tiny", "train", 1.0)],
                                          image_size=64, batch_size=8, augmentation=config,
                                          seed=4, data_dir=tiny_data_dir, teacher_image_size=128)
        return next(iter(batches))

    plain, mosaics, again = batch(0.0), batch(1.0), batch(1.0)
    for key in ("image", "teacher_image", "boxes", "labels"):
        np.testing.assert_array_equal(mosaics[key].numpy(), again[key].numpy())
    assert mosaics["image"].shape == (8, 64, 64, 3)
    assert mosaics["teacher_image"].shape == (8, 128, 128, 3)
    # Four photographs' plates in each image, cut where the quarters meet.
    assert mosaics["num_boxes"].numpy().mean() > 1.5 * plain["num_boxes"].numpy().mean()


def test_mosaics_stop_after_mosaic_batches(tiny_data_dir):
    def batches(**settings) -> list[dict]:
        config = augment.Augmentation(mosaic_prob=1.0, **settings)
        stream = pipeline.input_pipeline([("synthetic_plates/tiny", "train", 1.0)],
                                         image_size=128, batch_size=16, augmentation=config,
                                         seed=4, data_dir=tiny_data_dir, shuffle_buffer=8)
        return list(stream.take(8))

    def plates(some: list[dict]) -> float:
        return np.mean([batch["num_boxes"].numpy() for batch in some])

    closed, throughout = batches(mosaic_batches=4), batches()
    for before, mosaic in zip(closed[:4], throughout[:4]):
        np.testing.assert_array_equal(before["image"].numpy(), mosaic["image"].numpy())
    # Whole photographs after (1.1 plates each here): a mosaic holds the plates of four (1.8).
    assert plates(closed[4:]) < 0.75 * plates(throughout[4:])


def test_mosaic_batches_must_be_a_count():
    with pytest.raises(ConfigError, match=r"Augmentation.mosaic_batches must be an integer >= 0"):
        augment.Augmentation(mosaic_prob=0.5, mosaic_batches=1.5)
