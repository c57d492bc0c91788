"""Feature spec shared by every plate data set (see the dataset contract in docs/design.md)."""

import tensorflow_datasets as tfds


def plate_features(with_text: bool) -> tfds.features.FeaturesDict:
    """Image, file name and plate boxes; plus each plate's registration when the source has it."""
    objects = {
        "bbox": tfds.features.BBoxFeature(),
        "label": tfds.features.ClassLabel(names=["plate"]),
    }
    if with_text:
        objects["text"] = tfds.features.Text()
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "image/filename": tfds.features.Text(),
        "objects": tfds.features.Sequence(objects),
    })
