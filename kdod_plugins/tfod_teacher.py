"""A teacher exported by the TF Object Detection API (or by `python -m kdod.export`).

Point the Distiller at the export and this plugin loads it::

    # gin
    DistillerConfig.teacher_dir = "exported/ssd_resnet50_v1_fpn_640x640/saved_model"
    DistillerConfig.losses = {"pseudo_labels": 1.0}

Such a teacher only gives detections (its heads and anchors are sealed in the graph), so it
serves the losses that work across architectures: `pseudo_labels` (its detections as targets)
and `box_imitation` with `match = "detections"` (the student's boxes on the anchors matched to
them, L1 or GIoU). The student's images are letterboxed
squares already; the SavedModel gets them as they are and its boxes, normalized to its input,
are therefore in the student's frame. TF OD API classes (1-based ids) become kdod's 0-based
labels; a teacher with more classes than the student should map them before export.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

import kdod
from kdod import exported
from kdod.distill.distiller import IncompatibleTeacherError


class DetectionsOnly(dict):
    """Teacher outputs with detections alone; asking for head outputs says why there are none."""

    def __missing__(self, key: str):
        raise IncompatibleTeacherError(
            f"A loss asked for the teacher's {key!r}, but a teacher exported as a SavedModel "
            f"only gives detections. Use losses that work on detections: pseudo_labels, or "
            f"box_imitation with box_imitation.match = 'detections'.")


@kdod.register_teacher("tfod_saved_model")
class TfodSavedModelTeacher:
    """Serves a TF OD API SavedModel's detections as ``teacher_out["detections"]``."""

    image_size = None  # Any size: the SavedModel resizes its input itself.
    anchors = None  # No anchor-level outputs.
    trainable = False  # Frozen by construction: the Distiller sets it too.

    @staticmethod
    def can_load(path: str | Path) -> bool:
        return exported.find_saved_model(path) is not None

    def __init__(self, path: str | Path):
        self.path = Path(path)
        signature = exported.load_tfod_signature(path)
        # Frozen to constants, as the TFLite converter does: a training step's tape watches
        # every trainable variable a called function reads, and would then need gradients
        # through the teacher's NMS, which has none.
        self._frozen = convert_variables_to_constants_v2(signature)
        self._output_structure = signature.structured_outputs

    def __call__(self, images: tf.Tensor, training: bool = False) -> Mapping[str, dict]:
        """{"detections": boxes [B, D, 4], scores [B, D], classes [B, D] int32 (0-based),
        num_detections [B] int32} for images [B, S, S, 3] in [0, 255]."""
        images = tf.cast(tf.clip_by_value(tf.round(tf.cast(images, tf.float32)), 0, 255),
                         tf.uint8)
        # TF OD API signatures take one image per call.
        outputs = tf.map_fn(self._detect_one, images, fn_output_signature={
            "boxes": tf.float32, "scores": tf.float32, "classes": tf.int32,
            "num_detections": tf.int32})
        return DetectionsOnly(detections=outputs)

    def _detect_one(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = tf.nest.pack_sequence_as(
            self._output_structure, self._frozen(**{exported.INPUT_NAME: image[None]}))
        return {
            "boxes": outputs["detection_boxes"][0],
            "scores": outputs["detection_scores"][0],
            "classes": tf.cast(outputs["detection_classes"][0], tf.int32)
            - exported.LABEL_ID_OFFSET,
            "num_detections": tf.cast(outputs["num_detections"][0], tf.int32),
        }
