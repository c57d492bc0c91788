"""Crops of known text for the plate recognizer: rendered (synthetic) or a user's labelled crops.

    images, labels = synthetic_crops(1000, seed=0, split="train", height=48, width=144)
    crops = read_crop_csv("my_plates/labels.csv")   # rows: filename,plate_text

Both give crops fitted to the recognizer's input (`plate_ctc.fit_crop`) and CTC labels
(`ctc.encode`); rendered crops also say whether they are two-line plates
(`synthetic_two_line`, what teaches the recognizer's layout gate). A CSV names image files
relative to its own folder; a header row ``filename,plate_text`` is allowed. Plate text is
upper-cased and spaces and dashes dropped; a row whose text then holds anything but A-Z0-9
(or is empty, or longer than `ctc.MAX_LABEL_LENGTH`) is left out and counted in a warning, or,
with ``bad_text="refuse"``, is an error naming the line. A missing or unreadable image is
always an error naming it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import zlib
from pathlib import Path

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from kdod.errors import KdodError
from kdod.files import filename_text_rows, files_digest
from kdod.ocr import ctc
from kdod.ocr.plate_ctc import fit_crop
from tfds_builders.synthetic_plates.crops import CropConfig, crop_layout, render_crop

BAD_TEXT_CHOICES = ("skip", "refuse")
SEPARATORS = " -"  # written between groups on plates, not part of the registration


class CropSetError(KdodError):
    """A crop CSV, or an image it names, cannot be used; the message names the file and line."""


UNKNOWN_LAYOUT = -1.0  # two_line target of a crop whose layout no one knows (a user's crop)


@dataclasses.dataclass
class CropSet:
    """Crops fitted to the recognizer's input, their labels and texts, whether each is a
    two-line plate (1.0, 0.0, or UNKNOWN_LAYOUT: the default) and a teacher's per-character
    soft labels (`soft_labels`; None: none)."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    labels: np.ndarray  # int32 [N, ctc.MAX_LABEL_LENGTH]
    texts: list[str]
    two_line: np.ndarray | None = None  # float32 [N]
    soft: np.ndarray | None = None  # float32 [N, ctc.MAX_LABEL_LENGTH, A-Z0-9]

    def __post_init__(self):
        if self.two_line is None:
            self.two_line = np.full(len(self.texts), UNKNOWN_LAYOUT, np.float32)

    def __len__(self) -> int:
        return len(self.texts)


def crop_seed(seed: int, split: str, index: int) -> int:
    """A crop's seed, fixed by (seed, split name, index) and independent of the others."""
    return int(np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])
               .generate_state(1)[0])


def rendered_crops(count: int, seed: int, split: str, crop_config: CropConfig | None = None
                   ) -> tuple[list[np.ndarray], list[str]]:
    """`count` crops of `split` as rendered (seeds from `crop_seed`), and their texts."""
    rendered = [render_crop(crop_seed(seed, split, index), crop_config or CropConfig())
                for index in range(count)]
    return [image for image, _ in rendered], [text for _, text in rendered]


def synthetic_two_line(count: int, seed: int, split: str, crop_config: CropConfig | None = None
                       ) -> np.ndarray:
    """float32 [count]: 1.0 where `rendered_crops`' crop is a two-line plate, else 0.0."""
    return np.array([crop_layout(crop_seed(seed, split, index), crop_config or CropConfig())
                     == "two_line" for index in range(count)], np.float32)


def synthetic_crops(count: int, seed: int, split: str, height: int, width: int,
                    crop_config: CropConfig | None = None, workers: int | None = None
                    ) -> CropSet:
    """`rendered_crops` fitted to the recognizer's height x width, with labels: the same crops
    whatever the number of `workers` (processes; None: one per CPU), with a progress bar."""
    workers = workers or os.cpu_count() or 1
    chunks = [range(start, min(start + RENDER_CHUNK, count))
              for start in range(0, count, RENDER_CHUNK)]
    task = functools.partial(_fitted_chunk, seed=seed, split=split, height=height, width=width,
                             crop_config=crop_config or CropConfig())
    with tqdm(total=count, desc=f"rendering {split} crops", unit="crop") as progress:
        if workers == 1:
            parts = [_counted(task(chunk), progress) for chunk in chunks]
        else:  # spawn: the parent may run TensorFlow's threads, which fork would copy mid-use.
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
                parts = [_counted(part, progress) for part in pool.map(task, chunks)]
    images = np.concatenate([part.images for part in parts]) if parts else np.zeros(
        (0, height, width, 3), np.uint8)
    labels = np.concatenate([part.labels for part in parts]) if parts else np.zeros(
        (0, ctc.MAX_LABEL_LENGTH), np.int32)
    return CropSet(images, labels, [text for part in parts for text in part.texts],
                   synthetic_two_line(count, seed, split, crop_config))


RENDER_CHUNK = 500  # crops per task of a rendering worker


def renderer_sources() -> list[Path]:
    """The code that renders and fits the crops: the synthetic_plates package (its tests left
    out), this module and plate_ctc's fitting."""
    package = Path(render_crop.__code__.co_filename).parent
    sources = sorted(path for path in package.glob("*.py") if not path.stem.endswith("_test"))
    return [*sources, Path(__file__), Path(fit_crop.__code__.co_filename)]


@functools.cache
def renderer_fingerprint() -> str:
    """12 hex digits of `files_digest` of `renderer_sources`: a cache of crops keyed by it is not
    read by changed rendering code."""
    sources = renderer_sources()
    return files_digest(sources, Path(os.path.commonpath(sources)))[:12]


def _fitted_chunk(indices: range, seed: int, split: str, height: int, width: int,
                  crop_config: CropConfig) -> CropSet:
    rendered = [render_crop(crop_seed(seed, split, index), crop_config) for index in indices]
    return fitted_set([image for image, _ in rendered], [text for _, text in rendered], height,
                      width)


def _counted(part: CropSet, progress: tqdm) -> CropSet:
    progress.update(len(part))
    return part


def fitted_set(crops: list[np.ndarray], texts: list[str], height: int, width: int) -> CropSet:
    """A CropSet of crops fitted to the input size, with their encoded labels."""
    images = np.zeros((len(crops), height, width, 3), np.uint8)
    for index, crop in enumerate(crops):
        images[index] = fit_crop(crop, height, width)
    labels = np.stack([ctc.encode(text) for text in texts]) if texts else np.zeros(
        (0, ctc.MAX_LABEL_LENGTH), np.int32)
    return CropSet(images, labels.astype(np.int32), list(texts))


def clean_text(text: str) -> str:
    """The registration as labels hold it: upper case, separators (space, dash) dropped."""
    return "".join(char for char in text.strip().upper() if char not in SEPARATORS)


def label_problem(text: str) -> str | None:
    """Why a cleaned text cannot be a label, or None when it can."""
    if not text:
        return "the plate text is empty"
    if unknown := sorted({char for char in text if char not in ctc.ALPHABET}):
        return f"characters outside A-Z0-9: {''.join(unknown)!r}"
    if len(text) > ctc.MAX_LABEL_LENGTH:
        return f"longer than {ctc.MAX_LABEL_LENGTH} characters"
    return None


def read_csv_rows(path: str | Path, bad_text: str = "skip") -> list[tuple[Path, str]]:
    """(image path, cleaned text) of each usable row of a `filename,plate_text` CSV."""
    if bad_text not in BAD_TEXT_CHOICES:
        raise CropSetError(f"bad_text must be one of {', '.join(BAD_TEXT_CHOICES)}; got "
                           f"{bad_text!r}.")
    path = Path(path)
    if not path.is_file():
        raise CropSetError(f"No crop CSV at {path}: give a file of filename,plate_text rows "
                           f"(file names relative to the CSV's folder).")
    rows, skipped = [], []
    for number, filename, raw in filename_text_rows(path, CropSetError):
        text = clean_text(raw)
        if problem := label_problem(text):
            if bad_text == "refuse":
                raise CropSetError(f"{path}:{number}: {raw!r}: {problem}. Fix the row, or "
                                   f"leave such rows out with bad_text='skip'.")
            skipped.append(f"line {number} ({raw!r}: {problem})")
            continue
        rows.append((path.parent / filename, text))
    if skipped:
        logging.warning("%s: %d of %d rows left out, their text cannot be a label: %s%s", path,
                        len(skipped), len(skipped) + len(rows), "; ".join(skipped[:5]),
                        " ..." if len(skipped) > 5 else "")
    if not rows:
        raise CropSetError(f"{path} has no usable filename,plate_text rows.")
    return rows


def load_crop(path: Path) -> np.ndarray:
    """uint8 RGB pixels of a crop image; a CropSetError naming it when missing or unreadable."""
    if not path.is_file():
        raise CropSetError(f"{path} (named in the crop CSV) does not exist.")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise CropSetError(f"{path} (named in the crop CSV) cannot be read as an image: "
                           f"{type(error).__name__}: {error}") from None


def read_crop_csv(path: str | Path, bad_text: str = "skip") -> tuple[list[np.ndarray], list[str]]:
    """The crops a CSV names, as read, and their cleaned texts (see the module docstring)."""
    rows = read_csv_rows(path, bad_text)
    return [load_crop(image) for image, _ in rows], [text for _, text in rows]
