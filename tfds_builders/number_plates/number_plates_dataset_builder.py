"""number_plates: Kaggle aslanahmedov/number-plate-detection (number plates in Pascal VOC)."""

from __future__ import annotations

from typing import ClassVar

import tensorflow_datasets as tfds

from tfds_builders.voc.builder import VocPlatesBuilder
from tfds_builders.voc.kaggle import KaggleSource


class Builder(VocPlatesBuilder):
    """DatasetBuilder for number_plates; all but these constants is in tfds_builders/voc/."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    # Images and their VOC files share one folder; both class names mean a plate.
    SOURCE = KaggleSource(dataset="aslanahmedov/number-plate-detection",
                          image_dir="images", annotation_dir="images",
                          class_names=("number_plate", "num_plate"))
    MANUAL_DOWNLOAD_INSTRUCTIONS = SOURCE.manual_instructions()
    DESCRIPTION = """\
    228 JPEG photos (249x166 to 3720x2472 px) with one number plate each boxed in Pascal VOC
    (225 annotated; the three without annotation are skipped). JPEG bytes are stored
    unchanged; splits are 80/10/10 by a hash of the file name (see README.md).
    """
