"""Plate-text metrics: exact match and character error rate (CER), for OCR alone and end to end.

End to end, a ground-truth plate counts as read when a detection overlaps it at IoU >= 0.5
(each detection matched at most once, best IoU first) and that detection's text equals the
plate's. Texts are compared after `kdod.ocr.plate_text.normalize_text`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdod.errors import KdodError
from kdod.files import filename_text_rows
from kdod.ocr import base
from kdod.ocr.plate_text import normalize_text

MATCH_IOU = 0.5


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions turning a into b."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


@dataclasses.dataclass
class TextMetrics:
    """Accumulates (truth, prediction) pairs; `result()` gives exact-match accuracy and CER.

    CER is the sum of edit distances over the sum of ground-truth lengths (a plate not read
    at all costs its whole length).
    """

    plates: int = 0
    exact: int = 0
    errors: int = 0
    characters: int = 0

    def add(self, truth: str, prediction: str) -> None:
        truth, prediction = normalize_text(truth), normalize_text(prediction)
        self.plates += 1
        self.exact += truth == prediction
        self.errors += edit_distance(truth, prediction)
        self.characters += len(truth)

    def result(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}exact_match": self.exact / max(self.plates, 1),
                f"{prefix}cer": self.errors / max(self.characters, 1),
                f"{prefix}plates": float(self.plates)}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [N, M] of (ymin, xmin, ymax, xmax) boxes, in numpy (no TensorFlow needed)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def match_detections(truth_boxes: np.ndarray, detected_boxes: np.ndarray,
                     iou_threshold: float = MATCH_IOU) -> list[int | None]:
    """For each ground-truth box, the index of its detection (greedy by IoU), or None."""
    iou = _iou(truth_boxes, detected_boxes)
    matches: list[int | None] = [None] * iou.shape[0]
    for flat in np.argsort(-iou, axis=None):
        t, d = np.unravel_index(flat, iou.shape)
        if iou[t, d] < iou_threshold:
            break
        if matches[t] is None and d not in matches:
            matches[t] = int(d)
    return matches


class EndToEndMetrics(TextMetrics):
    """Plate text read through detection: an undetected plate counts as read as ''."""

    def add_image(self, truth_boxes: np.ndarray, truth_texts: Sequence[str],
                  detected_boxes: np.ndarray, detected_texts: Sequence[str]) -> None:
        for truth, match in zip(truth_texts, match_detections(truth_boxes, detected_boxes)):
            self.add(truth, "" if match is None else detected_texts[match])


def read_text_csv(path: str | Path) -> dict[str, list[str]]:
    """Ground truth from a user's CSV of `filename,plate_text` rows (a header row is allowed).

    A file with several plates has several rows; keys are file names as written.
    """
    if not Path(path).is_file():
        raise KdodError(f"No plate-text CSV at {path}: give a file of filename,plate_text rows.")
    truth: dict[str, list[str]] = {}
    for _, filename, text in filename_text_rows(path, KdodError):
        truth.setdefault(filename, []).append(normalize_text(text))
    return truth


# Read modes compared by `evaluate_reader`: the naive join, line selection, then formats.
READ_MODES = {"joined": {"select": False}, "selected": {"correct": False},
              "selected_formats": {}}


def evaluate_reader(reader: base.LineReader, crops: Sequence[np.ndarray], truths: Sequence[str],
                    formats: str | Sequence[str] | None) -> dict[str, dict[str, float] | float]:
    """OCR alone on crops of known text: ms per plate and the metrics of each read mode.

    The engine reads each crop once and every mode chooses the text from the same lines, so
    modes differ only in post-processing.
    """
    start = time.perf_counter()
    prepared = reader.read_prepared(list(crops))
    seconds = time.perf_counter() - start
    results: dict = {"ms_per_plate": 1000 * seconds / max(len(crops), 1)}
    for mode, overrides in READ_MODES.items():
        options = base.ReadOptions(formats=formats, **overrides)
        metrics = TextMetrics()
        for (crop, lines), truth in zip(prepared, truths):
            metrics.add(truth, base.lines_to_plate(lines, crop.shape[0], options).text)
        results[mode] = metrics.result()
    return results
