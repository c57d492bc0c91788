"""Exporting trained detectors for serving and edge devices (`kdod.exported` loads them back),
and the plate recognizer to TFLite (`convert_recognizer_tflite`; `kdod.train_ocr` writes it).

Two forms, written into one export folder (default model_dir/export) with a
``label_map.pbtxt``, the run's ``config.gin`` and the anchors beside them:

- ``saved_model/``: the TF Object Detection API serving signature. ``serving_default``
  takes ``input_tensor`` uint8 [1, H, W, 3] of any size, letterboxes it in the graph as
  evaluation does (`kdod.data.geometry`), runs the network, decodes and NMSs, and returns
  ``detection_boxes`` [1, D, 4] (ymin, xmin, ymax, xmax normalized to the input image,
  clipped to [0, 1]), ``detection_scores`` [1, D], ``detection_classes`` [1, D] (float32,
  1-based label-map ids), ``num_detections`` [1] (float32), ``raw_detection_boxes`` [1, A, 4]
  and ``raw_detection_scores`` [1, A, C + 1] (column 0 is the background slot of TF OD API
  exports; kdod's sigmoid heads predict none, so it holds 1 - the best class score).
- ``model_<quantize>.tflite`` (float32, float16, dynamic, int8): the network alone, uint8
  [1, S, S, 3] letterboxed image in, ``cls_logits`` [1, A, C] and ``box_regression`` [1, A, 4]
  out. Decoding and NMS run outside, in `kdod.detection.postprocess` with ``anchors.npy``
  (TfliteDetector does it). Why not TFLite's ``TFLite_Detection_PostProcess`` custom op: NMS
  is not a TFLite builtin either way, kdod's own post-processing keeps every form's numbers
  comparable (the Keras, SavedModel and TFLite paths share it), and in an int8 model an
  anchor-relative box code loses far less to 8 bits than a box normalized to the whole image.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from kdod import config
from kdod.data import geometry, tfod
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector
from kdod.exported import (
    ANCHORS_FILE,
    INPUT_NAME,
    LABEL_ID_OFFSET,
    SAVED_MODEL_DIR,
    SIGNATURE_KEY,
    ExportError,
)

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


# ---------------------------------------------------------------- SavedModel


def tf_variables(detector: Detector) -> list[tf.Variable]:
    """The tf.Variables under the detector's Keras variables, for a tf.Module to track.

    Tracking the Keras model itself would serialize its own traced functions, whose
    {level: tensor} outputs SavedModel cannot encode; tracking the Keras variables leaves the
    TFLite converter's frozen weights uninitialized (NaN outputs, measured on TF 2.21).
    """
    return [variable.value for variable in detector.variables]


class TfodServingModule(tf.Module):
    """The detector behind the TF OD API's ``serving_default`` signature (module docstring)."""

    def __init__(self, detector: Detector):
        super().__init__()
        self.detector_variables = tf_variables(detector)
        self._detect = detector.detect
        self._image_size = detector.image_size

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name=INPUT_NAME)])
    def serve(self, input_tensor: tf.Tensor) -> dict[str, tf.Tensor]:
        image = input_tensor[0]
        square, window = geometry.letterbox_image(image, self._image_size)
        image_hw = tf.shape(image)[:2]

        def to_image(boxes: tf.Tensor, clip: bool = True) -> tf.Tensor:
            return geometry.to_image_boxes(boxes, image_hw, window, clip)

        # Rounded as the input pipeline's uint8 images are, so serving sees what evaluation saw.
        detections = self._detect(tf.round(square)[None])
        raw_scores = detections["raw_scores"]
        background = 1.0 - tf.reduce_max(raw_scores, axis=-1, keepdims=True)
        return {
            "detection_boxes": to_image(detections["boxes"]),
            "detection_scores": detections["scores"],
            "detection_classes": tf.cast(detections["classes"] + LABEL_ID_OFFSET, tf.float32),
            "num_detections": tf.cast(detections["num_detections"], tf.float32),
            "raw_detection_boxes": to_image(detections["raw_boxes"], clip=False),
            "raw_detection_scores": tf.concat([background, raw_scores], axis=-1),
        }


def export_saved_model(detector: Detector, output_dir: str | Path) -> Path:
    """Writes output_dir/saved_model with the TF OD API serving signature."""
    path = Path(output_dir) / SAVED_MODEL_DIR
    module = TfodServingModule(detector)
    tf.saved_model.save(module, str(path),
                        signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
    return path


class NetworkModule(tf.Module):
    """images [1, S, S, 3] -> cls_logits, box_regression: what the TFLite model computes."""

    def __init__(self, detector: Detector, dtype: tf.DType):
        super().__init__()
        self.detector_variables = tf_variables(detector)
        size = detector.image_size

        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], dtype, name="images")])
        def network(images):
            outputs = detector(images, training=False)
            return {"cls_logits": outputs["cls_logits"],
                    "box_regression": outputs["box_regression"]}

        self.network = network


def calibration_images(image_size: int, count: int) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A TFLite representative data set: `count` training images, letterboxed as served."""
    dataset = input_pipeline(training=False, image_size=image_size, batch_size=1)

    def generate() -> Iterator[list[np.ndarray]]:
        batches = dataset.take(count).as_numpy_iterator()
        for batch in tqdm(batches, total=count, desc="calibrating int8", unit="image"):
            yield [batch["image"].astype(np.float32)]

    return generate


def convert_tflite(detector: Detector, quantize: str = "float32",
                   representative_data: Callable[[], Iterator[list[np.ndarray]]] | None = None,
                   ) -> bytes:
    """The detector's network as a TFLite flatbuffer with uint8 image input."""
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"Unknown quantization {quantize!r}; choose {', '.join(QUANTIZATIONS)}.")
    # int8 calibrates a float input in [0, 255] so the uint8 input's scale comes out ~1; the
    # float models cast a uint8 input themselves.
    dtype = tf.float32 if quantize == "int8" else tf.uint8
    module = NetworkModule(detector, dtype)
    return _module_tflite(module, module.network, quantize, representative_data)


def _module_tflite(module: tf.Module, function, quantize: str,
                   representative_data: Callable[[], Iterator[list[np.ndarray]]] | None) -> bytes:
    """A tf.Module's function as a TFLite flatbuffer. Through a SavedModel: only that path
    gives the .tflite a signature (named inputs and outputs)."""
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(module, folder, signatures={SIGNATURE_KEY: function})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE_KEY])
        _configure(converter, quantize, representative_data)
        return converter.convert()


class RecognizerModule(tf.Module):
    """crops uint8 [1, H, W, 3] -> logits [1, frames, classes]: the plate recognizer's TFLite."""

    def __init__(self, recognizer: keras.Model):
        super().__init__()
        self.recognizer_variables = tf_variables(recognizer)
        _, height, width, channels = recognizer.input_shape

        @tf.function(input_signature=[tf.TensorSpec([1, height, width, channels], tf.uint8,
                                                    name="crops")])
        def read(crops):
            return {"logits": recognizer(tf.cast(crops, tf.float32), training=False)}

        self.read = read


def convert_recognizer_tflite(recognizer: keras.Model, quantize: str = "float32") -> bytes:
    """A plate recognizer (`kdod.ocr.recognizer`) as a TFLite flatbuffer, uint8 crops in.

    float32, float16 or dynamic (int8 weights): int8 activations would need calibration crops.
    """
    if quantize not in QUANTIZATIONS[:3]:
        raise ExportError(f"A recognizer exports as {', '.join(QUANTIZATIONS[:3])}; got "
                          f"{quantize!r}.")
    module = RecognizerModule(recognizer)
    return _module_tflite(module, module.read, quantize, None)


def _configure(converter: tf.lite.TFLiteConverter, quantize: str,
               representative_data: Callable[[], Iterator[list[np.ndarray]]] | None) -> None:
    if quantize != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        if representative_data is None:
            raise ExportError("int8 quantization needs representative images.")
        converter.representative_dataset = representative_data
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32  # Head outputs go on to float decoding.


# ---------------------------------------------------------------- the export folder


def write_sidecar_files(detector: Detector, output_dir: str | Path, class_names: Sequence[str],
                        model_dir: str | Path | None = None) -> None:
    """label_map.pbtxt, anchors.npy and the run's config.gin beside the exported models."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if len(class_names) != detector.num_classes:
        raise ExportError(f"export.class_names has {len(class_names)} names for a detector of "
                          f"{detector.num_classes} classes; set them in gin.")
    tfod.write_label_map(folder / tfod.LABEL_MAP_NAME, class_names)
    np.save(folder / ANCHORS_FILE, np.asarray(detector.anchors, np.float32))
    run_config = Path(model_dir) / config.FULL_CONFIG if model_dir else None
    if run_config and run_config.is_file():
        shutil.copyfile(run_config, folder / config.FULL_CONFIG)
    else:
        (folder / config.FULL_CONFIG).write_text(gin.config_str())


@gin.configurable(denylist=["detector", "output_dir", "export_format", "quantize", "model_dir"])
def export(detector: Detector, output_dir: str | Path, export_format: str = "saved_model",
           quantize: str = "float32", model_dir: str | Path | None = None,
           calibration_count: int = 100, class_names: Sequence[str] = ("plate",)) -> Path:
    """Exports `detector` into output_dir; returns the SavedModel folder or .tflite file.

    gin: ``export.calibration_count`` (int8 representative images), ``export.class_names``.
    """
    write_sidecar_files(detector, output_dir, class_names, model_dir)
    if export_format == "saved_model":
        if quantize != "float32":
            raise ExportError("--quantize applies to --format=tflite; a SavedModel stays float32.")
        path = export_saved_model(detector, output_dir)
    elif export_format == "tflite":
        calibration = (calibration_images(detector.image_size, calibration_count)
                       if quantize == "int8" else None)
        path = Path(output_dir) / f"model_{quantize}.tflite"
        path.write_bytes(convert_tflite(detector, quantize, calibration))
    else:
        raise ExportError(f"Unknown format {export_format!r}; choose saved_model or tflite.")
    logging.info("Exported %s", path)
    return path


