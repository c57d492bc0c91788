"""Exporting trained detectors for serving and edge devices, and loading the exports back.

Two forms, written into one export folder (default model_dir/export) with a
``label_map.pbtxt``, the run's ``config.gin`` and the anchors beside them:

- ``saved_model/``: the TF Object Detection API serving signature. ``serving_default``
  takes ``input_tensor`` uint8 [1, H, W, 3] of any size, letterboxes it in the graph as
  `kdod.data.augment.letterbox` does, runs the network, decodes and NMSs, and returns
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
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from kdod import config
from kdod.data import augment, tfod
from kdod.data.pipeline import input_pipeline
from kdod.detection import postprocess
from kdod.detection.detector import Detector
from kdod.errors import KdodError

SAVED_MODEL_DIR = "saved_model"
ANCHORS_FILE = "anchors.npy"
SIGNATURE_KEY = "serving_default"
INPUT_NAME = "input_tensor"
DETECTION_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
RUNTIMES = ("litert", "tf")
LABEL_ID_OFFSET = 1  # TF OD API label-map ids start at 1; kdod labels at 0.


class ExportError(KdodError):
    """An export cannot be written or an exported model cannot be used."""


# ---------------------------------------------------------------- letterbox geometry


def letterbox_image(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The model-size square (float32) the detector sees, and the factors [4] that map boxes
    normalized to that square back to boxes normalized to `image` (see `to_image_boxes`)."""
    image_hw = tf.shape(image)[:2]
    window = augment.letterbox_window(image_hw)
    square = augment.crop_resize(image, window, size)
    factors = tf.tile(window[2:] / tf.cast(image_hw, tf.float32), [2])
    return square, factors


def to_image_boxes(boxes: tf.Tensor, factors: tf.Tensor, clip: bool = True) -> tf.Tensor:
    """Boxes normalized to the letterboxed square -> normalized to the original image."""
    boxes = boxes * factors
    return tf.clip_by_value(boxes, 0.0, 1.0) if clip else boxes


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
        square, factors = letterbox_image(input_tensor[0], self._image_size)
        # Rounded as the input pipeline's uint8 images are, so serving sees what evaluation saw.
        detections = self._detect(tf.round(square)[None])
        raw_scores = detections["raw_scores"]
        background = 1.0 - tf.reduce_max(raw_scores, axis=-1, keepdims=True)
        return {
            "detection_boxes": to_image_boxes(detections["boxes"], factors),
            "detection_scores": detections["scores"],
            "detection_classes": tf.cast(detections["classes"] + LABEL_ID_OFFSET, tf.float32),
            "num_detections": tf.cast(detections["num_detections"], tf.float32),
            "raw_detection_boxes": to_image_boxes(detections["raw_boxes"], factors, clip=False),
            "raw_detection_scores": tf.concat([background, raw_scores], axis=-1),
        }


def export_saved_model(detector: Detector, output_dir: str | Path) -> Path:
    """Writes output_dir/saved_model with the TF OD API serving signature."""
    path = Path(output_dir) / SAVED_MODEL_DIR
    module = TfodServingModule(detector)
    tf.saved_model.save(module, str(path),
                        signatures={SIGNATURE_KEY: module.serve.get_concrete_function()})
    return path


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
    # Through a SavedModel: only that path gives the .tflite a signature (named in/outputs).
    module = NetworkModule(detector, dtype)
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(module, folder, signatures={SIGNATURE_KEY: module.network})
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, [SIGNATURE_KEY])
        _configure(converter, quantize, representative_data)
        return converter.convert()


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


# ---------------------------------------------------------------- loading exports


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
        self.anchors = tf.constant(np.load(anchors))
        self.interpreter = _interpreter(path, runtime, num_threads)
        self.runner = self.interpreter.get_signature_runner()
        self.input = self.interpreter.get_input_details()[0]
        self.image_size = int(self.input["shape"][1])
        self._postprocess = tf.function(postprocess.postprocess)
        self._letterbox = tf.function(lambda image: letterbox_image(image, self.image_size))

    def network(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """cls_logits and box_regression of uint8 [1, S, S, 3] letterboxed images."""
        scale, zero_point = self.input["quantization"]
        if scale:  # int8 models: requantize in case calibration did not span [0, 255].
            images = np.clip(np.round(images / scale + zero_point), 0, 255)
        return self.runner(images=images.astype(self.input["dtype"]))

    def detect_image(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Detections on one uint8 [H, W, 3] image: boxes normalized to it, 0-based classes."""
        square, factors = self._letterbox(tf.constant(image))
        outputs = self.network(np.round(square.numpy())[None].astype(np.uint8))
        detections = self._postprocess(outputs["cls_logits"], outputs["box_regression"],
                                       self.anchors)
        count = int(detections["num_detections"][0])
        return {"boxes": to_image_boxes(detections["boxes"][0, :count], factors).numpy(),
                "scores": detections["scores"][0, :count].numpy(),
                "classes": detections["classes"][0, :count].numpy()}


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
