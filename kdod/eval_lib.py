"""COCO evaluation of detectors (pycocotools), in the pixels of the original images."""

from __future__ import annotations

import inspect
from pathlib import Path

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from tqdm import tqdm

from kdod import train_lib, visualize
from kdod.data.pipeline import input_pipeline, load_examples
from kdod.detection.detector import Detector, DetectorConfig
from kdod.metrics.coco import CocoEvaluator


def to_pixels(boxes: np.ndarray, window: np.ndarray, original_size: np.ndarray) -> np.ndarray:
    """Maps boxes normalized to the model input back into the original image's pixels."""
    y0, x0, y1, x1 = window
    scale = np.array([y1 - y0, x1 - x0, y1 - y0, x1 - x0])
    pixels = boxes * scale + np.array([y0, x0, y0, x0])
    height, width = original_size
    return np.clip(pixels, 0, [height, width, height, width])


def evaluate_model(model: Detector, dataset: tf.data.Dataset, num_visualizations: int = 0,
                   visualization_dir: str | Path | None = None) -> dict[str, float]:
    """COCO metrics of `model` on an evaluation dataset from `input_pipeline(training=False)`."""
    evaluator = CocoEvaluator()
    detect = tf.function(model.detect)
    shown = 0
    for batch in tqdm(dataset.as_numpy_iterator(), desc="evaluating", unit="batch"):
        detections = {k: v.numpy() for k, v in detect(batch["image"]).items()}
        for i in range(len(batch["image"])):
            gt = batch["boxes"][i, :batch["num_boxes"][i]]
            count = detections["num_detections"][i]
            pred = detections["boxes"][i, :count]
            window, size = batch["window"][i], batch["original_size"][i]
            evaluator.add(batch["filename"][i].decode(), to_pixels(gt, window, size),
                          batch["labels"][i, :batch["num_boxes"][i]],
                          to_pixels(pred, window, size), detections["scores"][i, :count],
                          detections["classes"][i, :count], tuple(size))
            if shown < num_visualizations:
                _save_visualization(batch["image"][i], gt, pred, detections["scores"][i, :count],
                                    Path(visualization_dir) / f"{shown:03d}.png")
                shown += 1
    return evaluator.result()


def _save_visualization(image, gt, pred, scores, path: Path) -> None:
    picture = visualize.draw_boxes(image, gt)
    picture = visualize.draw_boxes(picture, pred, [f"{s:.2f}" for s in scores],
                                   visualize.PREDICTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def load_trained(model_dir: str | Path) -> Detector:
    """The gin-configured Detector with model_dir's trained weights, built."""
    detector = train_lib.load_detector(Detector(DetectorConfig()), model_dir)
    # One call builds the Keras model itself (its network already is): count_params needs it.
    detector(tf.zeros([1, detector.image_size, detector.image_size, 3], tf.uint8))
    return detector


@gin.configurable(denylist=["model_dir", "split", "num_visualizations"])
def evaluate(model_dir: str, split: str | None = None, num_visualizations: int = 0,
             batch_size: int = 8) -> dict[str, float]:
    """Evaluates model_dir's latest checkpoint; writes metrics.json and TensorBoard scalars."""
    model = load_trained(model_dir)
    with gin.config_scope("eval"):
        dataset = input_pipeline(training=False, image_size=model.image_size,
                                 batch_size=batch_size, split=split)
    name = split or "eval"
    out_dir = Path(model_dir) / f"eval_{name}"
    metrics = evaluate_model(model, dataset, num_visualizations, out_dir / "visualizations")
    train_lib.write_json(out_dir / "metrics.json", metrics)
    writer = tf.summary.create_file_writer(str(Path(model_dir) / "logs" / f"eval_{name}"))
    with writer.as_default():
        for key, value in metrics.items():
            tf.summary.scalar(f"coco/{key}", value, step=0)
    logging.info("COCO metrics:\n%s", "\n".join(f"  {k:<10} {v:.4f}" for k, v in metrics.items()))
    return metrics


def original_eval_examples(split: str | None = None) -> tf.data.Dataset:
    """The evaluation sources of gin (eval/input_pipeline) as original images, not letterboxed.

    Exported models letterbox the images themselves, so they are evaluated on what a user
    would feed them.
    """
    with gin.config_scope("eval"):
        bound = gin.get_bindings(input_pipeline)
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(input_pipeline).parameters.items()}
    sources = bound.get("sources", defaults["sources"])
    data_dir = bound.get("data_dir", defaults["data_dir"])
    split = split or bound.get("split")
    datasets = [load_examples(name, split or source_split, data_dir)
                for name, source_split, _ in sources]
    dataset = datasets[0]
    for more in datasets[1:]:
        dataset = dataset.concatenate(more)
    return dataset


def evaluate_exported_model(detector, dataset: tf.data.Dataset) -> dict[str, float]:
    """COCO metrics of an exported detector (`export_lib.load_exported`) on original images."""
    evaluator = CocoEvaluator()
    for example in tqdm(dataset.as_numpy_iterator(), desc="evaluating", unit="image"):
        size = example["original_size"]
        whole_image = np.array([0, 0, *size], np.float32)  # Boxes are normalized to it.
        detections = detector.detect_image(example["image"])
        evaluator.add(example["filename"].decode(),
                      to_pixels(example["boxes"], whole_image, size), example["labels"],
                      to_pixels(detections["boxes"], whole_image, size), detections["scores"],
                      detections["classes"], tuple(size))
    return evaluator.result()


def exported_name(path: str | Path) -> str:
    """saved_model or the .tflite file's stem: names an exported model's results."""
    path = Path(path)
    return path.stem if path.suffix == ".tflite" else "saved_model"


@gin.configurable(denylist=["path", "split", "runtime"])
def evaluate_exported(path: str | Path, split: str | None = None, runtime: str = "litert",
                      num_threads: int = 2) -> dict[str, float]:
    """Evaluates an exported SavedModel folder or .tflite file with the same COCO code.

    Writes <export folder>/eval_<split>/<saved_model | tflite stem>.json.
    """
    from kdod import export_lib

    detector = export_lib.load_exported(path, runtime, num_threads)
    metrics = evaluate_exported_model(detector, original_eval_examples(split))
    results = export_lib.export_folder(path) / f"eval_{split or 'eval'}"
    train_lib.write_json(results / f"{exported_name(path)}.json", metrics)
    logging.info("COCO metrics of %s:\n%s", path,
                 "\n".join(f"  {k:<10} {v:.4f}" for k, v in metrics.items()))
    return metrics
