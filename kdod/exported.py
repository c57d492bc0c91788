"""Loading exported detectors back and running them on whole images.

`load_exported` opens what `kdod.export_lib` writes: a ``saved_model/`` folder with the TF OD
API ``serving_default`` signature (kdod's or the TF OD API's own exports), or a
``model_<quantize>.tflite`` network run by LiteRT or tf.lite with kdod's decoding and NMS
(`kdod.detection.postprocess`) on the ``anchors.npy`` beside it. Both answer
`detect_image(image)` with boxes normalized to the image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from kdod.data import geometry
from kdod.detection import postprocess
from kdod.errors import KdodError

SAVED_MODEL_DIR = "saved_model"
ANCHORS_FILE = "anchors.npy"
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "input_tensor"
DETECTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
RUNTIMES = ("litert", "tf")
LABEL_ID_OFFSET = 1  # TF OD API label-map ids start at 1; kdod labels at 0.


class ExportError(KdodError):
    """An export cannot be written or an exported model cannot be used."""


def find_saved_model(path: str | Path) -> Path | None:
    """The SavedModel folder at `path` or in its saved_model/ subfolder (TF OD API layout)."""
    for folder in (Path(path), Path(path) / SAVED_MODEL_DIR):
        if (folder / "saved_model.pb").is_file():
            return folder
    return None


def load_tfod_signature(path: str | Path) -> Callable[..., dict[str, tf.Tensor]]:
    """The ``serving_default`` function of a TF OD API style SavedModel, checked."""
    folder = find_saved_model(path)
    if folder is None:
        raise ExportError(f"No SavedModel at {path} (no saved_model.pb there or in "
                          f"{Path(path) / SAVED_MODEL_DIR}). Export one with: python -m "
                          f"kdod.export --model_dir=<run> --format=saved_model")
    loaded = tf.saved_model.load(str(folder))
    signature = loaded.signatures.get(SIGNATURE_KEY)
    if signature is None:
        raise ExportError(f"The SavedModel {folder} has no {SIGNATURE_KEY!r} signature (it has "
                          f"{sorted(loaded.signatures) or 'none'}); a TF OD API detector export "
                          f"is expected.")
    _check_signature(signature, folder)
    signature.loaded_model = loaded  # The signature needs its variables alive.
    return signature


def _check_signature(signature, folder: Path) -> None:
    inputs = signature.structured_input_signature[1]
    spec = inputs.get(INPUT_NAME)
    outputs = set(signature.structured_outputs)
    problems = []
    if (spec is None or spec.dtype != tf.uint8 or spec.shape.rank != 4
            or spec.shape[-1] not in (3, None)):
        found = ", ".join(f"{k}: {v.dtype.name} {v.shape}" for k, v in inputs.items())
        problems.append(f"input {INPUT_NAME!r} uint8 [1, H, W, 3] (found {found or 'none'})")
    if missing := [k for k in DETECTION_KEYS if k not in outputs]:
        problems.append(f"outputs {', '.join(missing)} (found {', '.join(sorted(outputs))})")
    if problems:
        raise ExportError(f"The SavedModel {folder} does not have the TF OD API detection "
                          f"signature: {SIGNATURE_KEY!r} lacks {'; '.join(problems)}.")


# ---------------------------------------------------------------- TFLite


class SavedModelDetector:
    """An exported SavedModel (kdod's or the TF OD API's) run on whole images."""

    def __init__(self, path: str | Path):
        self.signature = load_tfod_signature(path)

    def detect_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Detections on one uint8 [H, W, 3] image: boxes normalized to it, 0-based classes."""
        outputs = self.signature(**{INPUT_NAME: tf.constant(image[None], tf.uint8)})
        count = int(outputs["num_detections"][0])
        return {"boxes": outputs["detection_boxes"][0, :count].numpy(),
                "scores": outputs["detection_scores"][0, :count].numpy(),
                "classes": outputs["detection_classes"][0, :count].numpy().astype(np.int32)
                - LABEL_ID_OFFSET}


def _interpreter(path: Path, runtime: str, num_threads: int):
    if runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter
    elif runtime == "tf":
        Interpreter = tf.lite.Interpreter
    else:
        raise ExportError(f"Unknown TFLite runtime {runtime!r}; choose {', '.join(RUNTIMES)}.")
    return Interpreter(model_path=str(path), num_threads=num_threads)


class TfliteDetector:
    """An exported .tflite network plus kdod's decoding and NMS, run on whole images."""

    def __init__(self, path: str | Path, runtime: str = "litert", num_threads: int = 2):
        path = Path(path)
        anchors = path.with_name(ANCHORS_FILE)
        if not anchors.is_file():
            raise ExportError(f"{anchors} is missing: a TFLite export is decoded with the "
                              f"anchors written beside it by python -m kdod.export.")
        self.anchors = np.load(anchors)
        self.interpreter = _interpreter(path, runtime, num_threads)
        self.runner = self.interpreter.get_signature_runner()
        self.input = self.interpreter.get_input_details()[0]
        self.image_size = int(self.input["shape"][1])
        # One graph before the interpreter, traced once for every image size (eager ops and a
        # retrace per new image shape would cost more than the network); after it, NumPy on
        # the few anchors above the score threshold, as evaluation's settings say.
        self._letterbox = tf.function(self._letterbox_uint8, input_signature=[
            tf.TensorSpec([None, None, 3], tf.uint8)])
        self.postprocess_settings = postprocess.postprocess_settings()

    def _letterbox_uint8(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        square, window = geometry.letterbox_image(image, self.image_size)
        return tf.cast(tf.round(square), tf.uint8)[None], window

    def network(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """cls_logits and box_regression of uint8 [1, S, S, 3] letterboxed images."""
        scale, zero_point = self.input["quantization"]
        # int8 models: requantize where calibration did not make the input scale 1 (it
        # usually does, and the copy would cost ~1 ms of a 320-pixel image).
        if scale and (scale, zero_point) != (1.0, 0):
            images = np.clip(np.round(images / scale + zero_point), 0, 255)
        return self.runner(images=images.astype(self.input["dtype"], copy=False))

    def detect_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Detections on one uint8 [H, W, 3] image: boxes normalized to it, 0-based classes."""
        square, window = self._letterbox(image)
        outputs = self.network(square.numpy())
        detections = postprocess.postprocess_image(
            outputs["cls_logits"][0], outputs["box_regression"][0], self.anchors,
            **self.postprocess_settings)
        return {**detections, "boxes": geometry.to_image_boxes_numpy(
            detections["boxes"], image.shape[:2], window.numpy())}


def load_exported(path: str | Path, runtime: str = "litert",
                  num_threads: int = 2) -> SavedModelDetector | TfliteDetector:
    """An exported SavedModel folder or .tflite file, ready for `detect_image`."""
    path = Path(path)
    if path.suffix == ".tflite":
        if not path.is_file():
            raise ExportError(f"No TFLite model at {path}. Export one with: python -m "
                              f"kdod.export --model_dir=<run> --format=tflite")
        return TfliteDetector(path, runtime, num_threads)
    return SavedModelDetector(path)


def export_folder(path: str | Path) -> Path:
    """The export folder of an exported model (where label map, anchors and config.gin are)."""
    path = Path(path)
    if path.suffix == ".tflite":
        return path.parent
    folder = find_saved_model(path) or path
    return folder.parent if folder.name == SAVED_MODEL_DIR else folder
