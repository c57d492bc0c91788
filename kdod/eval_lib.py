"""COCO evaluation of detectors (pycocotools), in the pixels of the original images, and
plate-reading metrics (exact match, CER) when an OCR engine is chosen and the data has text."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image
from tqdm import tqdm

from kdod import checkpoints, config, distribute, exported, files, visualize
from kdod.data import geometry
from kdod.data.pipeline import input_pipeline, load_examples
from kdod.detection.detector import Detector, DetectorConfig
from kdod.errors import KdodError
from kdod.metrics.coco import CocoEvaluator
from kdod.metrics.text import EndToEndMetrics, TextMetrics, match_detections, read_text_csv
from kdod.ocr import anpr


def coco_metrics(images: Iterable[tuple[str, dict, dict]]) -> dict[str, float]:
    """COCO metrics of (filename, truth, detections) per image, boxes in original pixels.

    `truth` holds boxes, labels and original_size; `detections` boxes, scores, classes.
    """
    evaluator = CocoEvaluator()
    for filename, truth, found in images:
        evaluator.add(filename, truth["boxes"], truth["labels"], found["boxes"], found["scores"],
                      found["classes"], tuple(truth["original_size"]))
    return evaluator.result()


def batch_detector(model: Detector, strategy: tf.distribute.Strategy | None = None
                   ) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """images [B, S, S, 3] -> `model.detect`'s outputs as arrays; with a strategy, each batch
    is split over its replicas (padded to a multiple of them with copies of its last image, so
    every replica gets images and a TPU sees one shape) and the results gathered in order. Under
    MultiWorkerMirroredStrategy every worker passes the same batches, computes its replicas'
    shares and gets the whole batch's results."""
    if strategy is None:
        detect = tf.function(model.detect)
        return lambda images: {k: v.numpy() for k, v in detect(images).items()}
    count = distribute.replicas(strategy)

    @tf.function
    def detect_gathered(per_replica):
        outputs = strategy.run(model.detect, args=(per_replica,))
        return {key: strategy.gather(value, axis=0) for key, value in outputs.items()}

    def detect_split(images: np.ndarray) -> dict[str, np.ndarray]:
        padded = np.concatenate([images, np.repeat(images[-1:], -len(images) % count, 0)])
        shares = np.split(padded, count)
        per_replica = strategy.experimental_distribute_values_from_function(
            lambda context: tf.constant(shares[context.replica_id_in_sync_group]))
        return {key: value.numpy()[:len(images)]
                for key, value in detect_gathered(per_replica).items()}

    return detect_split


def letterboxed_detections(model: Detector, dataset: tf.data.Dataset, num_visualizations: int = 0,
                           visualization_dir: str | Path | None = None,
                           strategy: tf.distribute.Strategy | None = None,
                           ) -> Iterator[tuple[str, dict, dict]]:
    """`model`'s detections on an `input_pipeline(training=False)` dataset, per image, in the
    original images' pixels (see `coco_metrics`); the first images drawn as PNGs if asked.
    With a strategy (the model built in its scope), each batch is split over its replicas."""
    detect = batch_detector(model, strategy)
    shown = 0
    for batch in tqdm(dataset.as_numpy_iterator(), desc="evaluating", unit="batch"):
        detections = detect(batch["image"])
        for i in range(len(batch["image"])):
            true_count, count = batch["num_boxes"][i], detections["num_detections"][i]
            window, size = batch["window"][i], batch["original_size"][i]
            true_boxes, boxes = batch["boxes"][i, :true_count], detections["boxes"][i, :count]
            scores = detections["scores"][i, :count]
            if shown < num_visualizations:
                _save_visualization(batch["image"][i], true_boxes, boxes, scores,
                                    Path(visualization_dir) / f"{shown:03d}.png")
                shown += 1
            truth = {"boxes": geometry.to_pixels(true_boxes, window, size),
                     "labels": batch["labels"][i, :true_count], "original_size": size}
            found = {"boxes": geometry.to_pixels(boxes, window, size), "scores": scores,
                     "classes": detections["classes"][i, :count]}
            yield batch["filename"][i].decode(), truth, found


def evaluate_model(model: Detector, dataset: tf.data.Dataset, num_visualizations: int = 0,
                   visualization_dir: str | Path | None = None,
                   strategy: tf.distribute.Strategy | None = None) -> dict[str, float]:
    """COCO metrics of `model` on an evaluation dataset from `input_pipeline(training=False)`."""
    return coco_metrics(letterboxed_detections(model, dataset, num_visualizations,
                                               visualization_dir, strategy))


def _save_visualization(image, gt, pred, scores, path: Path) -> None:
    picture = visualize.draw_boxes(image, gt)
    picture = visualize.draw_boxes(picture, pred, [f"{s:.2f}" for s in scores],
                                   visualize.PREDICTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


def load_trained(model_dir: str | Path) -> Detector:
    """The gin-configured Detector with model_dir's trained weights, built."""
    detector = checkpoints.load_detector(Detector(DetectorConfig()), model_dir)
    # One call builds the Keras model itself (its network already is): count_params needs it.
    detector(tf.zeros([1, detector.image_size, detector.image_size, 3], tf.uint8))
    return detector


@dataclasses.dataclass(frozen=True)
class TextEvaluation:
    """Asks `evaluate` for plate-reading metrics (see `evaluate_text`).

    Attributes:
        ocr: an OCR backend name in kdod.OCR_BACKENDS.
        formats: plate formats for the OCR's correction (`anpr.build_ocr`).
        text_csv: ground truth from a `filename,plate_text` CSV instead of the data's
            objects/text.
        max_images: read at most this many images (OCR is slow); None reads them all.
        min_score: end to end, detections scoring lower are not read (as in kdod.recognize).
        ocr_model: the trained model of a trained engine (plate_ctc's run folder or .tflite).
    """

    ocr: str
    formats: str | None = None
    text_csv: str | Path | None = None
    max_images: int | None = None
    min_score: float = 0.3
    ocr_model: str | None = None


def evaluate_text(recognizer, examples: tf.data.Dataset,
                  truth: dict[str, list[str]] | None = None,
                  max_images: int | None = None) -> dict[str, float]:
    """Plate-reading metrics of an `anpr.PlateRecognizer` on original (not letterboxed) images.

    OCR alone (`ocr_*`) reads crops of the true boxes; end to end (`end_to_end_*`) a plate
    counts when a detection (scoring at least the recognizer's min_score) overlaps it at
    IoU >= 0.5 and reads it exactly. The plate texts are the examples' `texts`
    (`original_eval_examples(with_text=True)`) or, with `truth` (`metrics.text.read_text_csv`),
    the CSV rows of the image's file name (CSV names may carry folders: base names match too),
    one per box in the image's box order; images the CSV does not name are left out.
    """
    if truth is not None:
        truth = {**{Path(name).name: texts for name, texts in truth.items()}, **truth}
    ocr_alone, end_to_end = TextMetrics(), EndToEndMetrics()
    if truth is None and max_images is not None:
        examples = examples.take(max_images)
    total = int(examples.cardinality())  # Negative when unknown.
    images = 0
    for example in tqdm(examples.as_numpy_iterator(), desc="reading plates", unit="image",
                        total=total if total >= 0 else None):
        if max_images is not None and images >= max_images:
            break
        texts = _plate_texts(example, truth)
        if texts is None:
            continue
        image, boxes = example["image"], example["boxes"]
        for text, read in zip(texts, recognizer.read_boxes(image, boxes)):
            ocr_alone.add(text, read.text)
        found = recognizer.detect([image])[0][0]
        # Only detections matched to a plate are read: the others cannot change the metrics.
        matched = sorted({m for m in match_detections(boxes, found) if m is not None})
        found_texts = [""] * len(found)
        for index, read in zip(matched, recognizer.read_boxes(image, found[matched])):
            found_texts[index] = read.text
        end_to_end.add_image(boxes, texts, found, found_texts)
        images += 1
    if truth is not None and not images:
        raise KdodError("No image of the evaluation data is named in the plate-text CSV (e.g. "
                        f"{', '.join(list(truth)[:3])}); its file names must be the data's "
                        "image/filename values or their base names.")
    return {**ocr_alone.result("ocr_"), **end_to_end.result("end_to_end_"),
            "text_images": float(images)}


def _plate_texts(example: dict, truth: dict[str, list[str]] | None) -> list[str] | None:
    """The plate texts of an example's boxes, in box order; None when the CSV lacks the file."""
    if truth is None:
        return [text.decode() for text in example["texts"]]
    filename = example["filename"].decode()
    texts = truth.get(filename) or truth.get(Path(filename).name)
    if texts is not None and len(texts) != len(example["boxes"]):
        raise KdodError(f"The plate-text CSV has {len(texts)} rows for {filename}, which has "
                        f"{len(example['boxes'])} plate boxes: give one row per box.")
    return texts


def text_evaluator(text: TextEvaluation, split: str | None
                   ) -> Callable[[object], dict[str, float]]:
    """`evaluate_text` for a Detector or an exported model on the evaluation split's originals.

    Called before the long parts of an evaluation, so a missing CSV, data without text or an
    unknown OCR engine fail at once; the returned function then reads the plates.
    """
    truth = read_text_csv(text.text_csv) if text.text_csv else None
    examples = original_eval_examples(split, with_text=truth is None)
    ocr = anpr.build_ocr(text.ocr, text.formats, text.ocr_model)

    def run(detector) -> dict[str, float]:
        recognizer = anpr.PlateRecognizer(detector, ocr, min_score=text.min_score)
        return evaluate_text(recognizer, examples, truth, text.max_images)

    return run


def _log_metrics(title: str, metrics: dict[str, float]) -> None:
    logging.info("%s:\n%s", title, "\n".join(f"  {k:<22} {v:.4f}" for k, v in metrics.items()))


@gin.configurable(denylist=["model_dir", "split", "num_visualizations", "text"])
def evaluate(model_dir: str, split: str | None = None, num_visualizations: int = 0,
             batch_size: int = 8, text: TextEvaluation | None = None,
             strategy: tf.distribute.Strategy | None = None) -> dict[str, float]:
    """Evaluates model_dir's latest checkpoint; writes metrics.json and TensorBoard scalars.

    With `text`, the plate-reading metrics of `evaluate_text` join the COCO ones. With a
    strategy the detector runs on its replicas; under multi_worker every worker evaluates
    (the same batches, its replicas' shares) and only the chief writes files.
    """
    config.check_integer("evaluate.batch_size", batch_size)
    evaluate_plate_text = text_evaluator(text, split) if text is not None else None
    with distribute.scope(strategy):
        model = load_trained(model_dir)
    with gin.config_scope("eval"):
        dataset = input_pipeline(training=False, image_size=model.image_size,
                                 batch_size=batch_size, split=split)
    name = split or "eval"
    out_dir = Path(model_dir) / f"eval_{name}"
    writes = distribute.is_chief(strategy)
    coco = evaluate_model(model, dataset, num_visualizations if writes else 0,
                          out_dir / "visualizations", strategy)
    _log_metrics("COCO metrics", coco)
    plate_text = evaluate_plate_text(model) if evaluate_plate_text else {}
    if plate_text:
        _log_metrics("Plate-text metrics", plate_text)
    metrics = {**coco, **plate_text}
    if not writes:
        return metrics
    files.write_json(out_dir / "metrics.json", metrics)
    logging.info("Metrics written to %s", out_dir / "metrics.json")
    writer = tf.summary.create_file_writer(str(Path(model_dir) / "logs" / f"eval_{name}"))
    with writer.as_default():
        for group, values in (("coco", coco), ("text", plate_text)):
            for key, value in values.items():
                tf.summary.scalar(f"{group}/{key}", value, step=0)
    return metrics


def original_eval_examples(split: str | None = None, with_text: bool = False) -> tf.data.Dataset:
    """The evaluation sources of gin (eval/input_pipeline) as original images, not letterboxed.

    Exported models letterbox the images themselves, so they are evaluated on what a user
    would feed them. `with_text` adds each box's plate text (`load_examples`).
    """
    with gin.config_scope("eval"):
        bound = gin.get_bindings(input_pipeline)
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(input_pipeline).parameters.items()}
    sources = bound.get("sources", defaults["sources"])
    data_dir = bound.get("data_dir", defaults["data_dir"])
    split = split or bound.get("split")
    datasets = [load_examples(name, split or source_split, data_dir, with_text=with_text)
                for name, source_split, _ in sources]
    dataset = datasets[0]
    for more in datasets[1:]:
        dataset = dataset.concatenate(more)
    return dataset


def exported_detections(detector, dataset: tf.data.Dataset) -> Iterator[tuple[str, dict, dict]]:
    """An exported detector's (`exported.load_exported`) detections on original images, per
    image, in their pixels (see `coco_metrics`)."""
    for example in tqdm(dataset.as_numpy_iterator(), desc="evaluating", unit="image"):
        size = example["original_size"]
        whole_image = np.array([0, 0, *size], np.float32)  # Boxes are normalized to it.
        found = detector.detect_image(example["image"])
        truth = {"boxes": geometry.to_pixels(example["boxes"], whole_image, size),
                 "labels": example["labels"], "original_size": size}
        yield example["filename"].decode(), truth, {
            **found, "boxes": geometry.to_pixels(found["boxes"], whole_image, size)}


def exported_name(path: str | Path) -> str:
    """saved_model or the .tflite file's stem: names an exported model's results."""
    path = Path(path)
    return path.stem if path.suffix == ".tflite" else "saved_model"


@gin.configurable(denylist=["path", "split", "runtime", "text"])
def evaluate_exported(path: str | Path, split: str | None = None, runtime: str = "litert",
                      num_threads: int = 2, text: TextEvaluation | None = None
                      ) -> dict[str, float]:
    """Evaluates an exported SavedModel folder or .tflite file with the same COCO code.

    With `text`, adds the plate-reading metrics of `evaluate_text`.
    Writes <export folder>/eval_<split>/<saved_model | tflite stem>.json.
    """
    config.check_integer("evaluate_exported.num_threads", num_threads)
    evaluate_plate_text = text_evaluator(text, split) if text is not None else None
    detector = exported.load_exported(path, runtime, num_threads)
    metrics = coco_metrics(exported_detections(detector, original_eval_examples(split)))
    _log_metrics(f"COCO metrics of {path}", metrics)
    if evaluate_plate_text:
        text_metrics = evaluate_plate_text(detector)
        _log_metrics(f"Plate-text metrics of {path}", text_metrics)
        metrics = {**metrics, **text_metrics}
    results = exported.export_folder(path) / f"eval_{split or 'eval'}"
    files.write_json(results / f"{exported_name(path)}.json", metrics)
    return metrics
