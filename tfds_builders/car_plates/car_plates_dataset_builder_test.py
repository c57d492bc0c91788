"""Builds car_plates from its dummy_data (the real archive layout, generated images)."""

from typing import ClassVar

import tensorflow_datasets as tfds

from tfds_builders.car_plates import car_plates_dataset_builder as builder_module


class CarPlatesTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = builder_module.Builder
    # Cars0, Cars1 (two plates), Cars3 | Cars34 | Cars2, Cars8 by the name-hash rule.
    SPLITS: ClassVar[dict[str, int]] = {"train": 3, "validation": 1, "test": 2}
    SKIP_TF1_GRAPH_MODE = True
