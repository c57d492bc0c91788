"""Exports: the TF OD API SavedModel signature, TFLite float32/int8 on both interpreters,
evaluation of exported models, and clear errors for what cannot be loaded."""

import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import OVERFIT_TINY
from conftest import TINY_GIN as TINY

from kdod import config, eval_lib, export_lib, exported, train_lib
from kdod.data import augment, geometry, tfod
from kdod.data.pipeline import load_examples
from kdod.detection import postprocess
from kdod.detection.detector import Detector, DetectorConfig

# Overfits the first 8 training images in about 20 s, so the exports have plates to find.
OVERFIT = [*OVERFIT_TINY, "train.steps = 200", "train.checkpoint_every = 200",
           "export.calibration_count = 4"]


@pytest.fixture(scope="session")
def tiny_export(tiny_data_dir, tmp_path_factory):
    """A trained tiny run with its SavedModel exported by the CLI (in run/export)."""
    run = tmp_path_factory.mktemp("tiny_run")
    gin.clear_config()
    config.parse_gin([TINY], [f"input_pipeline.data_dir = '{tiny_data_dir}'", *OVERFIT])
    train_lib.train(str(run))
    gin.clear_config()
    result = subprocess.run([sys.executable, "-m", "kdod.export", f"--model_dir={run}",
                             "--format=saved_model"], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return run


@pytest.fixture
def trained(tiny_export, clean_gin):
    """The run's detector, under the run's gin config."""
    config.parse_gin([str(tiny_export / config.FULL_CONFIG)])
    return eval_lib.load_trained(tiny_export)


def _plate_images():
    """(image uint8 [H, W, 3], boxes normalized) of the training images the model overfit."""
    examples = load_examples("synthetic_plates/tiny", "train[:8]",
                             gin.query_parameter("input_pipeline.data_dir"))
    return [(e["image"], e["boxes"]) for e in examples.as_numpy_iterator()]


def _keras_detections(detector, image):
    """The Keras detector on an image of any size, boxes normalized to that image."""
    letterboxed = augment.letterbox({"image": tf.constant(image), "boxes": tf.zeros([0, 4])},
                                    detector.image_size)
    detections = detector.detect(tf.round(letterboxed["image"])[None])
    side = max(image.shape[:2])
    factors = np.tile(side / np.array(image.shape[:2], np.float32), 2)
    count = int(detections["num_detections"][0])
    return {"boxes": np.clip(detections["boxes"][0, :count].numpy() * factors, 0, 1),
            "scores": detections["scores"][0, :count].numpy(),
            "classes": detections["classes"][0, :count].numpy()}


def _best_iou(a, b):
    """The largest IoU between boxes a [N, 4] and b [M, 4]; 0 when either is empty."""
    if not len(a) or not len(b):
        return 0.0
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a, area_b = (np.prod(x[:, 2:] - x[:, :2], axis=-1) for x in (a, b))
    return float((inter / (area_a[:, None] + area_b[None, :] - inter)).max())


def test_saved_model_has_the_tfod_api_signature_and_a_label_map(tiny_export):
    export_dir = tiny_export / "export"
    assert tfod.read_label_map(export_dir / tfod.LABEL_MAP_NAME) == {1: "plate"}
    signature = tf.saved_model.load(str(export_dir / "saved_model")).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert (spec.name, spec.dtype, spec.shape.as_list()) == ("input_tensor", tf.uint8,
                                                             [1, None, None, 3])
    outputs = {k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_outputs.items()}
    anchors = np.load(export_dir / exported.ANCHORS_FILE).shape[0]
    assert outputs == {
        "detection_boxes": (tf.float32, [1, 100, 4]),
        "detection_scores": (tf.float32, [1, 100]),
        "detection_classes": (tf.float32, [1, 100]),
        "num_detections": (tf.float32, [1]),
        "raw_detection_boxes": (tf.float32, [1, anchors, 4]),
        "raw_detection_scores": (tf.float32, [1, anchors, 2]),  # Background + plate.
    }


def test_saved_model_detections_equal_keras_on_images_of_other_sizes(trained, tiny_export):
    saved_model = exported.SavedModelDetector(tiny_export / "export")
    image, _ = _plate_images()[0]
    for height, width in [(150, 230), (201, 97)]:  # Neither the training size nor square.
        resized = tf.cast(tf.image.resize(image, [height, width]), tf.uint8).numpy()
        expected = _keras_detections(trained, resized)
        served = saved_model.detect_image(resized)
        assert len(expected["scores"]) > 0
        np.testing.assert_allclose(served["scores"], expected["scores"], atol=1e-4)
        np.testing.assert_allclose(served["boxes"], expected["boxes"], atol=1e-4)
        np.testing.assert_array_equal(served["classes"], expected["classes"])
    raw = saved_model.signature(input_tensor=tf.constant(resized[None]))
    assert raw["detection_classes"].numpy()[0, 0] == 1.0  # TF OD API ids are 1-based.
    assert 0.0 <= raw["detection_boxes"].numpy().min() <= raw["detection_boxes"].numpy().max() <= 1


@pytest.mark.parametrize("runtime", exported.RUNTIMES)
def test_tflite_float32_matches_keras(trained, tiny_export, runtime):
    path = export_lib.export(trained, tiny_export / "export", "tflite", "float32",
                             model_dir=tiny_export)
    tflite = exported.TfliteDetector(path, runtime)
    image, _ = _plate_images()[1]
    letterboxed = tf.round(augment.letterbox({"image": tf.constant(image),
                                              "boxes": tf.zeros([0, 4])}, 128)["image"])[None]
    outputs = tflite.network(letterboxed.numpy().astype(np.uint8))
    expected = trained(letterboxed)
    for key in ("cls_logits", "box_regression"):
        np.testing.assert_allclose(outputs[key], expected[key].numpy(), atol=1e-3)
    detections, keras = tflite.detect_image(image), _keras_detections(trained, image)
    np.testing.assert_allclose(detections["boxes"], keras["boxes"], atol=1e-4)
    for height, width in [(150, 230), (201, 97), (96, 96)]:  # Other sizes, one graph for all.
        resized = tf.cast(tf.image.resize(image, [height, width]), tf.uint8).numpy()
        detections, expected = tflite.detect_image(resized), _keras_detections(trained, resized)
        np.testing.assert_allclose(detections["boxes"], expected["boxes"], atol=1e-4)
        np.testing.assert_allclose(detections["scores"], expected["scores"], atol=1e-4)
    assert tflite._letterbox.experimental_get_tracing_count() == 1


def test_a_detector_with_box_bins_exports_to_tflite_and_saved_model(tmp_path, clean_gin):
    """The side distributions stay inside the network: the exports give the same box codes."""
    config.parse_gin([TINY], ["DetectorConfig.box_bins = 8", "DetectorConfig.image_size = 64"])
    detector = Detector(DetectorConfig())
    image = tf.cast(tf.random.stateless_uniform([80, 50, 3], [0, 3], 0, 255), tf.uint8).numpy()
    square, window = geometry.letterbox_image(tf.constant(image), 64)
    square = tf.round(square)[None]
    network = detector(square)
    assert "box_distribution" in network
    keras_detections = detector.detect(square)
    path = export_lib.export(detector, tmp_path, "tflite", "float32")
    for runtime in exported.RUNTIMES:
        tflite = exported.TfliteDetector(path, runtime)
        outputs = tflite.network(square.numpy().astype(np.uint8))
        assert set(outputs) == {"cls_logits", "box_regression"}
        for key in outputs:
            np.testing.assert_allclose(outputs[key], network[key].numpy(), atol=1e-4)
        raw_boxes = postprocess.postprocess(outputs["cls_logits"], outputs["box_regression"],
                                            tflite.anchors)["raw_boxes"]
        np.testing.assert_allclose(raw_boxes, keras_detections["raw_boxes"], atol=1e-4)
        assert tflite.detect_image(image)["boxes"].shape[1:] == (4,)
    export_lib.export(detector, tmp_path, "saved_model")
    served = exported.SavedModelDetector(tmp_path).signature(input_tensor=tf.constant(image[None]))
    expected_boxes = geometry.to_image_boxes(keras_detections["raw_boxes"], image.shape[:2],
                                             window, clip=False)
    np.testing.assert_allclose(served["raw_detection_boxes"], expected_boxes, atol=1e-4)


def test_the_real_students_csp_network_exports_to_tflite_with_the_keras_outputs(tmp_path,
                                                                                clean_gin):
    config.parse_gin([TINY], ["DetectorConfig.backbone = 'csp_darknet'",
                              "DetectorConfig.image_size = 64", "csp_darknet.width = 0.125"])
    detector = Detector(DetectorConfig())
    square = tf.cast(tf.random.stateless_uniform([1, 64, 64, 3], [0, 4], 0, 255), tf.uint8)
    network = detector(tf.cast(square, tf.float32))
    path = export_lib.export(detector, tmp_path, "tflite", "float32")
    outputs = exported.TfliteDetector(path, exported.RUNTIMES[0]).network(square.numpy())
    for key in ("cls_logits", "box_regression"):
        np.testing.assert_allclose(outputs[key], network[key].numpy(), atol=1e-4)


def test_int8_loads_on_both_interpreters_and_finds_the_plate(trained, tiny_export):
    path = export_lib.export(trained, tiny_export / "export", "tflite", "int8",
                             model_dir=tiny_export)
    found = [(image, boxes) for image, boxes in _plate_images()
             if _best_iou(_keras_detections(trained, image)["boxes"][:1], boxes) > 0.7]
    assert found, "the Keras model should find at least one plate it was trained on"
    image, plates = found[0]
    for runtime in exported.RUNTIMES:
        int8 = exported.TfliteDetector(path, runtime)
        assert int8.input["dtype"] == np.uint8
        detections = int8.detect_image(image)
        assert len(detections["boxes"]) > 0
        assert _best_iou(detections["boxes"][:1], plates) > 0.5, detections["boxes"][:3]


def test_evaluating_the_saved_model_gives_the_checkpoint_metrics(trained, tiny_export):
    checkpoint = eval_lib.evaluate(str(tiny_export))
    exported = eval_lib.evaluate_exported(tiny_export / "export" / "saved_model")
    assert exported["AP50"] > 0.3
    for key in ("AP", "AP50", "AR100"):
        assert exported[key] == pytest.approx(checkpoint[key], abs=0.01), key
    assert (tiny_export / "export" / "eval_eval" / "saved_model.json").is_file()


def test_missing_or_foreign_exports_give_clear_errors(tmp_path, clean_gin):
    with pytest.raises(exported.ExportError, match="No SavedModel at .*kdod.export"):
        exported.load_exported(tmp_path / "nothing")
    with pytest.raises(exported.ExportError, match="No TFLite model at"):
        exported.load_exported(tmp_path / "model.tflite")

    module = tf.Module()
    module.classify = tf.function(lambda x: {"logits": x * 2.0},
                                  input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "classifier"),
                        signatures={"serving_default": module.classify})
    with pytest.raises(exported.ExportError,
                       match=r"does not have the TF OD API detection signature.*input_tensor.*"
                             r"detection_boxes"):
        exported.load_exported(tmp_path / "classifier")

    (tmp_path / "classifier" / config.FULL_CONFIG).write_text("")
    result = subprocess.run([sys.executable, "-m", "kdod.evaluate",
                             f"--exported={tmp_path / 'classifier'}"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "does not have the TF OD API detection signature" in result.stderr
    assert "Traceback" not in result.stderr
