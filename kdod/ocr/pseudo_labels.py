"""Pseudo-labels for kdod's recognizer: real plate crops read by the big OCR engines (teachers).

    engines = build_engines(["easyocr", "rapidocr", "tesseract"])
    summary = pseudo_label("tfrecord:data/train.record", "train", engines, "runs/pseudo_real",
                           min_agree=2, min_score=0.95)

Every ground-truth box of a detection source (`kdod.data.pipeline.load_examples`) is cut as
`kdod.recognize` cuts a detection (`cropping.crop_box` with the OCR margin) and read by each
engine. A crop's reading is kept as its label (`choose_label`) where at least `min_agree`
engines read the same valid text, or, failing that, where one engine read a valid text with a
score of at least `min_score`. Written to the output folder:

    crops/00000.png ...  every crop read (RGB)
    labels.csv           filename,plate_text of the kept crops (`crop_sets.read_crop_csv`)
    readings.csv         every crop: each engine's text and score, the kept text, the reason
    summary.json         images, plates, kept and left out by reason, skipped boxes by reason

Labels follow the training crops' convention (`label_text`): the rendered crops never draw the
letter O, and the recognizer learns the round glyph as the digit 0.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image
from tqdm import tqdm

from kdod import files
from kdod.data import pipeline
from kdod.errors import KdodError
from kdod.ocr import anpr, base, cropping
from kdod.ocr.base import OcrBackend, PlateRead
from kdod.ocr.crop_sets import clean_text, label_problem

AGREE, CONFIDENT, DISAGREE, EMPTY = "agree", "confident", "disagree", "empty"
KEPT, LEFT_OUT = (AGREE, CONFIDENT), (DISAGREE, EMPTY)
DEGENERATE, OUTSIDE = "degenerate", "outside_image"
SKIP_REASONS = {DEGENERATE: "degenerate (no extent, or under a pixel once clipped to the image)",
                OUTSIDE: "outside the image"}
CROP_MARGIN = cropping.CropPreparation.margin  # as kdod.recognize and kdod.evaluate cut crops


@dataclasses.dataclass(frozen=True)
class PseudoLabel:
    """A crop's label (empty when left out) and why: agree, confident, disagree or empty."""

    text: str
    reason: str

    @property
    def kept(self) -> bool:
        return self.reason in KEPT


def label_text(text: str) -> str:
    """An engine's reading as the recognizer's labels write it: `crop_sets.clean_text`, and the
    letter O as the digit 0 (the training crops' registrations have no O; see the module)."""
    return clean_text(text).replace("O", "0")


def plate_problem(text: str) -> str | None:
    """Why a label text cannot be a plate's label (`crop_sets.label_problem`, or shorter than
    a registration), or None when it can."""
    if problem := label_problem(text):
        return problem
    if len(text) < base.MIN_LENGTH:
        return f"shorter than {base.MIN_LENGTH} characters"
    return None


def choose_label(reads: Mapping[str, PlateRead], min_agree: int,
                 min_score: float) -> PseudoLabel:
    """The label of one crop from each engine's reading ({engine: PlateRead}).

    Texts are compared as labels (`label_text`); one that no label can hold (`plate_problem`)
    counts as no reading. Kept: the text most engines read, when at least `min_agree` did and
    no other text as many ("agree"); else the one text read with a score >= `min_score`
    ("confident"). Left out: texts were read but neither rule picks one ("disagree"), or no
    engine read a valid text ("empty").
    """
    valid = {engine: text for engine, read in reads.items()
             if not plate_problem(text := label_text(read.text))}
    if not valid:
        return PseudoLabel("", EMPTY)
    votes = collections.Counter(valid.values()).most_common()
    (text, count), runner_up = votes[0], votes[1][1] if len(votes) > 1 else 0
    if count >= min_agree and count > runner_up:
        return PseudoLabel(text, AGREE)
    confident = {text for engine, text in valid.items() if reads[engine].score >= min_score}
    if len(confident) == 1:
        return PseudoLabel(confident.pop(), CONFIDENT)
    return PseudoLabel("", DISAGREE)


def box_problem(box: Sequence[float], image_shape: Sequence[int]) -> str | None:
    """Why a box (ymin, xmin, ymax, xmax normalized) cannot be cut from an image of
    `image_shape`: DEGENERATE (no extent, or under a pixel high or wide once clipped to the
    image), OUTSIDE (no part of it in the image); None when it can."""
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    if not (ymax > ymin and xmax > xmin):  # NaN fails here too
        return DEGENERATE
    top, left, bottom, right = np.clip([ymin, xmin, ymax, xmax], 0.0, 1.0)
    if bottom <= top or right <= left:
        return OUTSIDE
    height, width = image_shape[:2]
    if (bottom - top) * height < 1 or (right - left) * width < 1:
        return DEGENERATE
    return None


def build_engines(names: Sequence[str], formats: str | None = None) -> dict[str, OcrBackend]:
    """{name: backend} of `kdod.OCR_BACKENDS` (`anpr.build_ocr`), all set up before any work:
    an unknown name or an engine that cannot start is an error naming it."""
    if not names:
        raise KdodError("Give at least one OCR engine, e.g. easyocr,rapidocr,tesseract.")
    if repeated := sorted({name for name in names if list(names).count(name) > 1}):
        raise KdodError(f"Engines named twice: {', '.join(repeated)}; an engine agreeing with "
                        "itself is no agreement.")
    return {name: anpr.build_ocr(name, formats) for name in names}


@dataclasses.dataclass
class Tally:
    """What a pseudo-labelling run saw, for summary.json."""

    images: int = 0
    labels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def summary(self) -> dict:
        return {"images": self.images, "plates": sum(self.labels.values()),
                "kept": {reason: self.labels[reason] for reason in KEPT},
                "left_out": {reason: self.labels[reason] for reason in LEFT_OUT},
                "skipped_boxes": {reason: self.skipped[reason] for reason in SKIP_REASONS}}


def plate_crops(example: dict, tally: Tally) -> list[tuple[int, np.ndarray]]:
    """(box index, crop) of each box of an example that can be cut; the others are logged and
    counted in `tally`."""
    image, crops = example["image"], []
    for index, box in enumerate(example["boxes"]):
        if problem := box_problem(box, image.shape):
            logging.warning("%s: box %d %s skipped: %s.", example["filename"].decode(), index,
                            [round(float(v), 4) for v in box], SKIP_REASONS[problem])
            tally.skipped[problem] += 1
            continue
        crops.append((index, cropping.crop_box(image, box, CROP_MARGIN)))
    return crops


def read_plates(example: dict, engines: Mapping[str, OcrBackend], tally: Tally
                ) -> list[tuple[int, np.ndarray, dict[str, PlateRead]]]:
    """(box index, crop, {engine: reading}) of each box of an example that can be cut; each
    engine reads the image's crops in one call."""
    cut = plate_crops(example, tally)
    crops = [crop for _, crop in cut]
    reads = {name: engine.read(crops) for name, engine in engines.items()} if crops else {}
    return [(index, crop, {name: engine_reads[position] for name, engine_reads in reads.items()})
            for position, (index, crop) in enumerate(cut)]


def pseudo_label(source: str, split: str, engines: Mapping[str, OcrBackend],
                 output: str | Path, *, min_agree: int, min_score: float,
                 max_images: int | None = None, data_dir: str | None = None) -> dict:
    """Reads every plate box of `source`'s `split` with `engines` and writes the crops, their
    labels and readings to `output` (see the module docstring); returns the summary.

    `source` is a data source of `pipeline.load_examples` ("tfrecord:...", "car_plates,
    manual_dir=..."); `max_images` reads only the first images.
    """
    if min_agree > len(engines):
        logging.warning("min_agree = %d, more than the engines given (%s): no text can be "
                        "kept by agreement, only by a score >= %s.", min_agree,
                        ", ".join(engines), min_score)
    examples = pipeline.load_examples(source, split, data_dir)
    if max_images is not None:
        examples = examples.take(max_images)
    output = Path(output)
    (output / "crops").mkdir(parents=True, exist_ok=True)
    tally, readings, labels = Tally(), [], []
    known = int(examples.cardinality())
    for example in tqdm(examples.as_numpy_iterator(), desc="pseudo-labelling", unit="image",
                        total=known if known >= 0 else None):
        tally.images += 1
        for index, crop, crop_reads in read_plates(example, engines, tally):
            filename = f"crops/{len(readings):05d}.png"
            Image.fromarray(crop).save(output / filename)
            label = choose_label(crop_reads, min_agree, min_score)
            tally.labels[label.reason] += 1
            readings.append(reading_row(filename, example["filename"].decode(), index,
                                        crop_reads, label))
            if label.kept:
                labels.append((filename, label.text))
    files.write_csv(output / "labels.csv", ["filename", "plate_text"], labels)
    files.write_csv(output / "readings.csv", reading_header(engines), readings)
    summary = {"source": source, "split": split, "engines": list(engines),
               "min_agree": min_agree, "min_score": min_score, **tally.summary()}
    files.write_json(output / "summary.json", summary)
    return summary


def reading_header(engines: Sequence[str]) -> list[str]:
    return ["filename", "image", "box", *[f"{name}_{column}" for name in engines
                                          for column in ("text", "score")],
            "plate_text", "reason"]


def reading_row(filename: str, image: str, box: int, reads: Mapping[str, PlateRead],
                label: PseudoLabel) -> list:
    """A row of readings.csv: the crop, its image and box index, each engine's reading, the
    kept text (empty when left out) and the reason."""
    engine_columns = [value for read in reads.values() for value in (read.text,
                                                                     f"{read.score:.4f}")]
    return [filename, image, box, *engine_columns, label.text, label.reason]

