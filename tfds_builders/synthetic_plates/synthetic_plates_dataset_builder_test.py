"""Builds the tiny config of synthetic_plates and checks it against the renderer."""

from typing import ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_module
from tfds_builders.synthetic_plates.scene import render_scene


class SyntheticPlatesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST: ClassVar[list[str]] = ["tiny"]
    SPLITS: ClassVar[dict[str, int]] = {"train": 24, "validation": 8, "test": 8}
    SKIP_TF1_GRAPH_MODE = True


def test_stored_image_is_the_rendered_jpeg(tmp_path):
    builder = builder_module.Builder(config="tiny", data_dir=str(tmp_path))
    builder.download_and_prepare()
    config = builder.builder_config
    dataset = builder.as_dataset(split="validation",
                                 decoders={"image": tfds.decode.SkipDecoding()})
    for example in tfds.as_numpy(dataset):
        index = int(example["image/filename"].decode().removeprefix("validation_")[:6])
        seed = builder_module.scene_seed(config.seed, "validation", index)
        scene = render_scene(seed, config.scene_config())
        assert example["image"] == scene.jpeg  # stored as rendered, not re-encoded
        # libjpeg's accurate IDCT (PIL's default) gives back exactly the rendered pixels.
        decoded = tf.io.decode_jpeg(example["image"], dct_method="INTEGER_ACCURATE")
        np.testing.assert_array_equal(decoded.numpy(), scene.image)
        np.testing.assert_allclose(example["objects"]["bbox"], scene.boxes, atol=1e-6)
        assert [t.decode() for t in example["objects"]["text"]] == scene.texts
