"""The OCR protocol, and choosing the registration among the text lines a plate carries.

Real plates carry more than the registration: state or country names, slogans, dealer frames,
stickers. Joining everything an engine reads gets few plates right (1.3% exact on 751 real US
crops with EasyOCR), so every backend returns text *lines* with boxes, and `select_registration`
picks the one that looks like the registration: the tallest characters, near the middle, in a
known format, with digits and a plausible length.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import gin
import numpy as np

from kdod.errors import KdodError
from kdod.ocr import cropping, plate_text
from kdod.ocr.cropping import CropPreparation

MIN_LENGTH, MAX_LENGTH = 2, 10  # registrations are this long in most of the world


@dataclasses.dataclass(frozen=True)
class PlateRead:
    """A plate's text (normalized; empty when nothing was read) and a score in [0, 1]."""

    text: str
    score: float


@dataclasses.dataclass(frozen=True)
class TextLine:
    """A piece of text an engine found: its text, confidence and box (x0, y0, x1, y1) pixels."""

    text: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def polygon_bounds(points: Sequence[Sequence[float]]) -> tuple[float, float, float, float]:
    """The axis-aligned box (x0, y0, x1, y1) of a polygon's points (engines give quadrilaterals)."""
    xy = np.asarray(points, np.float64).reshape(-1, 2)
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


@runtime_checkable
class OcrBackend(Protocol):
    """What kdod asks of an OCR engine (docs/design.md, OCR contract)."""

    def read(self, crops: list[np.ndarray]) -> list[PlateRead]:
        """Plate text for each uint8 HxWx3 RGB crop."""
        ...


def group_rows(lines: Sequence[TextLine]) -> list[TextLine]:
    """Joins pieces on one row (an engine splits 'AB12 CDE' at the space) into one line each.

    Pieces share a row when they overlap vertically by half the smaller height and their heights
    differ by less than 2x (a sticker's small print beside the registration stays apart).
    """
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: (item.box[1] + item.box[3]) / 2):
        for row in rows:
            if _same_row(_join(row), line):
                row.append(line)
                break
        else:
            rows.append([line])
    return [_join(row) for row in rows]


def _same_row(a: TextLine, b: TextLine) -> bool:
    overlap = min(a.box[3], b.box[3]) - max(a.box[1], b.box[1])
    low, high = sorted((max(a.height, 1e-6), max(b.height, 1e-6)))
    return overlap >= 0.5 * low and high / low < 2.0


def _join(row: list[TextLine]) -> TextLine:
    row = sorted(row, key=lambda item: item.box[0])
    weights = np.array([max(len(item.text), 1) for item in row], np.float64)
    score = float(np.average([item.score for item in row], weights=weights))
    box = (min(i.box[0] for i in row), min(i.box[1] for i in row),
           max(i.box[2] for i in row), max(i.box[3] for i in row))
    return TextLine("".join(item.text for item in row), score, box)


def candidate_lines(lines: Sequence[TextLine]) -> list[TextLine]:
    """Rows and their single pieces (a row may have swallowed a sticker), normalized, unique."""
    seen, candidates = set(), []
    for line in [*group_rows(lines), *lines]:
        text = plate_text.normalize_text(line.text)
        if text and text not in seen:
            seen.add(text)
            candidates.append(dataclasses.replace(line, text=text))
    return candidates


def registration_likeness(line: TextLine, tallest: float, widest: float, crop_height: float,
                          patterns: Sequence[str]) -> float:
    """How much a (normalized) line looks like the registration; higher is more likely."""
    centre = (line.box[1] + line.box[3]) / 2 / max(crop_height, 1.0)
    in_format = bool(patterns) and plate_text.apply_formats(line.text, patterns)[1] is not None
    plausible_length = MIN_LENGTH + 2 <= len(line.text) <= MAX_LENGTH - 2
    return (3.0 * line.height / max(tallest, 1e-6)  # the registration has the largest glyphs
            + 1.0 * (1.0 - min(1.0, 2 * abs(centre - 0.5)))  # and sits mid-plate
            + 1.0 * (line.box[2] - line.box[0]) / max(widest, 1e-6)  # spanning most of it
            + 2.0 * in_format
            + 0.7 * any(c.isdigit() for c in line.text)  # state names and slogans have none
            + 0.5 * plausible_length
            + 1.0 * line.score
            - 1.0 * (len(line.text) > MAX_LENGTH or len(line.text) < MIN_LENGTH))


def select_registration(lines: Sequence[TextLine], crop_height: float,
                        patterns: Sequence[str] = ()) -> TextLine | None:
    """The line most like a registration, or None when the engine read nothing."""
    candidates = candidate_lines(lines)
    if not candidates:
        return None
    tallest = max(line.height for line in candidates)
    widest = max(line.box[2] - line.box[0] for line in candidates)
    return max(candidates, key=lambda line: registration_likeness(line, tallest, widest,
                                                                  crop_height, patterns))


def read_bands(crop: np.ndarray, boxes: Sequence[tuple[float, float, float, float]],
               recognise: Callable[[np.ndarray], tuple[str, float]]) -> list[TextLine]:
    """Each box's band read as one line by a single-line recogniser; the whole crop if no box."""
    if not boxes:
        boxes = [(0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))]
    return [TextLine(*recognise(cropping.cut_band(crop, box)), box) for box in boxes]


def join_all(lines: Sequence[TextLine]) -> str:
    """Everything read, top to bottom and left to right: the naive baseline."""
    return plate_text.normalize_text("".join(line.text for line in group_rows(lines)))


@gin.configurable(module="kdod.ocr")
@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How lines become a plate's text.

    Attributes:
        formats: a region of `plate_text.PLATE_FORMATS` ('us', 'uk+us'), patterns, or None.
        correct: fit the selected text to the formats, fixing look-alike characters.
        select: choose the registration line; False joins every line (the naive baseline).
    """

    formats: str | Sequence[str] | None = None
    correct: bool = True
    select: bool = True

    def __post_init__(self):
        plate_text.resolve_formats(self.formats)  # An unknown region fails here, not mid-run.


def lines_to_plate(lines: Sequence[TextLine], crop_height: float,
                   options: ReadOptions = ReadOptions()) -> PlateRead:
    """The plate's text from its lines: selection, then format-guided correction."""
    patterns = plate_text.resolve_formats(options.formats)
    if not options.select:
        text = join_all(lines)
        score = float(np.mean([line.score for line in lines])) if lines else 0.0
        return PlateRead(text, score if text else 0.0)
    line = select_registration(lines, crop_height, patterns)
    if line is None:
        return PlateRead("", 0.0)
    text = line.text
    if options.correct and patterns:
        text, _ = plate_text.apply_formats(text, patterns)
    return PlateRead(text, float(line.score))


class LineReader(abc.ABC):
    """Base of the backends: prepares crops, asks the engine for lines, selects and corrects.

    A subclass implements `read_lines` for one prepared crop; everything else is shared.
    """

    def __init__(self, options: ReadOptions | None = None,
                 preparation: CropPreparation | None = None):
        self.options = options or ReadOptions()
        self.preparation = preparation or CropPreparation()

    @abc.abstractmethod
    def read_lines(self, crop: np.ndarray) -> list[TextLine]:
        """Text lines in one prepared uint8 RGB crop, boxes in its pixels."""

    def read_prepared(self, crops: list[np.ndarray]) -> list[tuple[np.ndarray, list[TextLine]]]:
        """Each crop prepared and its lines: for benchmarks comparing read options."""
        prepared = [cropping.prepare_crop(crop, self.preparation) for crop in crops]
        return [(crop, self.read_lines(crop)) for crop in prepared]

    def read(self, crops: list[np.ndarray]) -> list[PlateRead]:
        return [lines_to_plate(lines, crop.shape[0], self.options)
                for crop, lines in self.read_prepared(crops)]


class OcrSetupError(KdodError):
    """An OCR engine is missing or its weights cannot be found; the message says how to fix it."""


def install_hint(engine: str, extra: str, extra_note: str = "") -> str:
    """The message for a chosen engine that is not installed."""
    return (f"OCR engine {engine!r} is not installed. Install it with "
            f"`pip install 'kdod[{extra}]'`{extra_note} (or `make install`).")
