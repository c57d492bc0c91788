"""TFDS builders for kdod's plate data sets; importing this package registers them with TFDS."""

from tfds_builders.car_plates import car_plates_dataset_builder  # noqa: F401
from tfds_builders.number_plates import number_plates_dataset_builder  # noqa: F401
from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder  # noqa: F401
