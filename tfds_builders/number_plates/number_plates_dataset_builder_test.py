"""Builds number_plates from its dummy_data (the real archive layout, generated images)."""

from typing import ClassVar

import tensorflow_datasets as tfds

from tfds_builders.number_plates import number_plates_dataset_builder as builder_module


class NumberPlatesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_module.Builder
    # N2, N3 (class num_plate) | N7 | N1, N13 by the name-hash rule; N4 has no annotation,
    # as three images of the real set have none, and is skipped.
    SPLITS: ClassVar[dict[str, int]] = {"train": 2, "validation": 1, "test": 2}
    SKIP_TF1_GRAPH_MODE = True
