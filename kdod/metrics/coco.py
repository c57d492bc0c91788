"""COCO detection metrics with pycocotools, from boxes held in memory.

Boxes come in pixels as (ymin, xmin, ymax, xmax) with 0-based labels, the layout of the rest of
kdod; the evaluator converts them to COCO's (x, y, width, height) and 1-based category ids.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# The 12 numbers COCOeval.summarize() prints, in its order. -1 means "no ground truth in that
# area range" (pycocotools' convention).
METRIC_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large")


class CocoEvaluator:
    """Accumulates ground truth and detections image by image, then runs COCOeval.

    Attributes:
        summary: the text COCOeval.summarize() printed at the last result() call.
    """

    def __init__(self):
        self.summary = ""
        self.reset()

    def reset(self) -> None:
        self._images: list[dict] = []
        self._image_ids: dict[str, int] = {}
        self._ground_truth: list[dict] = []
        self._detections: list[dict] = []

    def add(self, image_id: str, gt_boxes: np.ndarray, gt_labels: np.ndarray,
            det_boxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray,
            image_size: tuple[int, int]) -> None:
        """Adds one image: boxes [N, 4] / [D, 4] in pixels (ymin, xmin, ymax, xmax)."""
        if image_id in self._image_ids:
            raise ValueError(f"Image {image_id!r} was already added to the evaluator.")
        coco_id = len(self._images) + 1
        self._image_ids[image_id] = coco_id
        height, width = image_size
        self._images.append({"id": coco_id, "height": int(height), "width": int(width),
                             "file_name": str(image_id)})
        for box, label in zip(_as_boxes(gt_boxes), np.asarray(gt_labels).reshape(-1)):
            self._ground_truth.append(_annotation(coco_id, box, label, len(self._ground_truth)))
        for box, score, label in zip(_as_boxes(det_boxes), np.asarray(det_scores).reshape(-1),
                                     np.asarray(det_labels).reshape(-1)):
            detection = _annotation(coco_id, box, label, len(self._detections))
            detection["score"] = float(score)
            self._detections.append(detection)

    def result(self) -> dict[str, float]:
        """The 12 COCO metrics over everything added so far."""
        if not self._ground_truth:
            raise ValueError("CocoEvaluator has no ground-truth boxes: COCO AP is undefined. "
                             "Add images with at least one ground-truth box.")
        categories = [{"id": int(c)} for c in sorted(
            {a["category_id"] for a in self._ground_truth + self._detections})]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress.
            ground_truth = _coco(self._images, categories, self._ground_truth)
            detections = _coco(self._images, categories, self._detections)
            evaluation = COCOeval(ground_truth, detections, iouType="bbox")
            evaluation.evaluate()
            evaluation.accumulate()
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            evaluation.summarize()
        self.summary = summary.getvalue()
        return {name: float(value) for name, value in zip(METRIC_NAMES, evaluation.stats)}


def _as_boxes(boxes: np.ndarray) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _annotation(image_id: int, box: np.ndarray, label: int, index: int) -> dict:
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    width, height = xmax - xmin, ymax - ymin
    return {"id": index + 1, "image_id": image_id, "category_id": int(label) + 1,
            "bbox": [xmin, ymin, width, height], "area": width * height, "iscrowd": 0}


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    """A COCO object built in memory. Detections go the same way, not through loadRes, which
    fails on an empty list (an untrained model may detect nothing)."""
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco
