"""TFDS builders for kdod's plate data sets; importing this package registers them with TFDS."""

from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder  # noqa: F401
