"""car_plates: Kaggle "Car License Plate Detection" (andrewmvd/car-plate-detection)."""

from __future__ import annotations

from typing import ClassVar

import tensorflow_datasets as tfds

from tfds_builders.voc.builder import VocPlatesBuilder
from tfds_builders.voc.kaggle import KaggleSource


class Builder(VocPlatesBuilder):
    """DatasetBuilder for car_plates; all but these constants is in tfds_builders/voc/."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    SOURCE = KaggleSource(dataset="andrewmvd/car-plate-detection", image_dir="images",
                          annotation_dir="annotations", class_names=("licence",))
    MANUAL_DOWNLOAD_INSTRUCTIONS = SOURCE.manual_instructions()
    DESCRIPTION = """\
    433 photos of cars (PNG, 225-600 px wide) with 471 licence plates boxed in Pascal VOC
    (MakeML's "Car License Plates Dataset", CC0). Images are stored as RGB PNG; splits are
    80/10/10 by a hash of the file name (see README.md).
    """
