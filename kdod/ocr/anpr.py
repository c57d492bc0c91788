"""Automatic number-plate recognition: detector -> plate crops -> OCR -> plate text with scores.

The detector sees each image letterboxed into its square input; boxes are mapped back to the
original image, and crops are cut from the original pixels (more detail than the model input).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from kdod import registry
from kdod.data import geometry
from kdod.detection.detector import Detector
from kdod.errors import KdodError
from kdod.ocr import cropping
from kdod.ocr.base import OcrBackend, PlateRead, ReadOptions


@dataclasses.dataclass(frozen=True)
class PlateResult:
    """One plate: box (ymin, xmin, ymax, xmax) normalized to the original image, scores, text."""

    box: tuple[float, float, float, float]
    score: float
    text: str
    text_score: float

    def box_pixels(self, image_shape: Sequence[int]) -> list[float]:
        """The box as [xmin, ymin, xmax, ymax] pixels of an image of `image_shape` (H, W, ...)."""
        height, width = image_shape[:2]
        ymin, xmin, ymax, xmax = self.box
        return [round(xmin * width, 1), round(ymin * height, 1), round(xmax * width, 1),
                round(ymax * height, 1)]


TRAINED_ENGINES = ("plate_ctc",)  # backends that read a model kdod trained (`model=`)


def build_ocr(name: str, formats: str | None = None, model: str | None = None) -> OcrBackend:
    """The OCR backend `name` of `kdod.OCR_BACKENDS`.

    `formats` is a region of `plate_text.PLATE_FORMATS` ('us', 'uk+us') or comma-separated
    patterns ('LLDDLLL,DLLLDDD'); without it, gin's `ReadOptions.formats` (if bound) applies.
    `model` is the trained model of an engine of TRAINED_ENGINES (e.g. plate_ctc's run
    folder); without it, gin's binding (``plate_ctc.model``) applies.
    """
    chosen = {"formats": formats.split(",") if "," in formats else formats} if formats else {}
    if model is not None and name not in TRAINED_ENGINES:
        raise KdodError(f"--ocr_model applies to the trained OCR engines "
                        f"({', '.join(TRAINED_ENGINES)}), not {name!r}.")
    extra = {"model": model} if model is not None else {}
    try:
        return registry.OCR_BACKENDS.build(name, options=ReadOptions(**chosen), **extra)
    except ValueError as error:
        raise KdodError(str(error)) from None


class PlateRecognizer:
    """Detects plates and reads them.

    Args:
        detector: a trained Detector (e.g. `eval_lib.load_trained(model_dir)`), or an exported
            model from `exported.load_exported` (it letterboxes images itself).
        ocr: an OCR backend (e.g. `kdod.OCR_BACKENDS.build("easyocr")`).
        min_score: detections scoring lower are dropped before OCR.
        margin: fraction of a box's size added around it when cutting the crop.
    """

    def __init__(self, detector: Detector, ocr: OcrBackend, min_score: float = 0.3,
                 margin: float = cropping.CropPreparation.margin):
        self.detector = detector
        self.ocr = ocr
        self.min_score = min_score
        self.margin = margin
        self._detect = tf.function(detector.detect) if isinstance(detector, Detector) else None

    def detect(self, images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: boxes normalized to the original image [N, 4] and their scores [N]."""
        if self._detect is None:  # An exported model: boxes come normalized to each image.
            results = []
            for image in images:
                detections = self.detector.detect_image(image)
                keep = detections["scores"] >= self.min_score
                results.append((detections["boxes"][keep], detections["scores"][keep]))
            return results
        squares, windows = zip(*(geometry.letterbox_image(tf.convert_to_tensor(image),
                                                          self.detector.image_size)
                                 for image in images))
        detections = {k: v.numpy() for k, v in self._detect(tf.stack(squares)).items()}
        results = []
        for image, window, boxes, scores, count in zip(
                images, windows, detections["boxes"], detections["scores"],
                detections["num_detections"]):
            keep = scores[:count] >= self.min_score
            found = geometry.to_image_boxes(boxes[:count][keep], image.shape[:2], window)
            results.append((found.numpy(), scores[:count][keep]))
        return results

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        """What the OCR reads for `boxes` (normalized to `image`): the pixels plus the margin."""
        return [cropping.crop_box(image, box, self.margin) for box in boxes]

    def read_boxes(self, image: np.ndarray, boxes: np.ndarray) -> list[PlateRead]:
        """The text in `boxes` (normalized to the uint8 RGB `image`), e.g. true plate boxes."""
        crops = self.crops(image, boxes)
        return self.ocr.read(crops) if crops else []

    def __call__(self, images: Sequence[np.ndarray]) -> list[list[PlateResult]]:
        """Plates found in each uint8 RGB image, with their text."""
        detected = self.detect(images)
        crops = [crop for image, (boxes, _) in zip(images, detected)
                 for crop in self.crops(image, boxes)]
        reads = iter(self.ocr.read(crops) if crops else [])
        return [[_result(box, score, next(reads)) for box, score in zip(boxes, scores)]
                for boxes, scores in detected]


def _result(box: np.ndarray, score: float, read: PlateRead) -> PlateResult:
    return PlateResult(tuple(float(v) for v in box), float(score), read.text, read.score)
