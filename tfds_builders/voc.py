"""Pascal VOC plate archives (the Kaggle sets), read defensively into TFDS examples.

Shared by the `car_plates` and `number_plates` builders, which differ only in their
`KaggleSource` constants. What happens to bad input (every case is counted, and the counts
end preparation in one log line):

- an image without annotation, or an annotation without image: skipped;
- an image that does not decode (corrupt, truncated): skipped;
- an image above `MAX_IMAGE_PIXELS`: skipped from its header, never decoded;
- malformed XML (or XML with a DTD, refused to rule out entity expansion): skipped, named;
- an annotation whose <size> disagrees with the image's pixels: skipped (its boxes would be
  in another frame);
- a box partly outside the image: clipped; a box with no area left: dropped;
- an unknown class name: preparation fails, listing the known names;
- an archive member whose path escapes the archive's folder (zip-slip, or a symlink out of
  an unpacked folder): preparation fails.

Images are stored as RGB. An 8-bit RGB JPEG keeps its bytes (no second lossy generation);
anything else (RGBA/paletted/grey PNGs, CMYK JPEGs) is converted to RGB and stored as PNG,
which is lossless. RGBA loses its alpha channel, as TensorFlow's 3-channel decoders do (the
car_plates alpha only marks a few edge pixels).

Splits are a deterministic function of the file stem: the first 8 bytes of
SHA-256(stem), big-endian, modulo 100 -> train below 80, validation below 90, test above.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import os
import posixpath
import stat
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import ClassVar, Protocol

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from kdod.errors import KdodError
from tfds_builders.features import plate_features

logger = logging.getLogger(__name__)

MAX_IMAGE_PIXELS = 50_000_000  # 50 MP; the largest real image (3720x2472) is 9.2 MP.
MAX_MEMBER_BYTES = 200 * 2**20  # No image or XML file of these sets comes near 200 MiB.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_PERCENTS = (("train", 80), ("validation", 90), ("test", 100))  # cumulative

# Every count the final log line reports, in its order.
COUNT_KEYS = ("examples", "boxes", "image_without_annotation", "annotation_without_image",
              "duplicate_name", "oversized_file", "corrupt_image", "image_too_large",
              "malformed_xml",
              "size_mismatch", "boxes_clipped", "boxes_dropped")


class UnsafeArchiveError(KdodError):
    """An archive member's path leaves the archive's folder."""


class UnknownClassError(KdodError):
    """An annotation names a class the builder does not know."""


class MissingArchiveError(KdodError):
    """The archive is neither in the manual folder nor downloadable from Kaggle."""


class SkipExample(Exception):
    """One file pair cannot be used; `reason` is one of COUNT_KEYS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


# ---------------------------------------------------------------- archives


class Archive(Protocol):
    def names(self) -> list[str]: ...
    def read(self, name: str) -> bytes: ...


def safe_member_name(name: str) -> str:
    """`name` as a relative POSIX path inside the archive; refuses anything that escapes it."""
    unified = name.replace("\\", "/")
    normal = posixpath.normpath(unified)
    if (unified.startswith("/") or (len(unified) > 1 and unified[1] == ":")
            or normal == ".." or normal.startswith("../")):
        raise UnsafeArchiveError(f"Archive member {name!r} points outside the archive's "
                                 "folder; refusing the archive.")
    return normal


class ZipArchive:
    """The Kaggle zip, read in place (nothing is extracted)."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = zipfile.ZipFile(path)
        self._members: dict[str, zipfile.ZipInfo] = {}
        for info in self._zip.infolist():
            name = safe_member_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise UnsafeArchiveError(f"Archive member {info.filename!r} in {path} is a "
                                         "symbolic link; refusing the archive.")
            if not info.is_dir():
                self._members[name] = info

    def names(self) -> list[str]:
        return sorted(self._members)

    def read(self, name: str) -> bytes:
        info = self._members[name]
        _check_member_size(name, info.file_size)
        return self._zip.read(info)


class FolderArchive:
    """The folder the Kaggle zip unpacks to."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def names(self) -> list[str]:
        found = []
        for folder, _, files in os.walk(self.root):
            for file in files:
                found.append(Path(folder, file).relative_to(self.root).as_posix())
        return sorted(found)

    def read(self, name: str) -> bytes:
        path = (self.root / safe_member_name(name)).resolve()
        if not path.is_relative_to(self.root):  # A symlink out of the folder.
            raise UnsafeArchiveError(f"{self.root / name} resolves to {path}, outside "
                                     f"{self.root}; refusing it.")
        _check_member_size(name, path.stat().st_size)
        return path.read_bytes()


def _check_member_size(name: str, size: int) -> None:
    if size > MAX_MEMBER_BYTES:
        raise SkipExample("oversized_file", f"{name} is {size} bytes, above "
                          f"MAX_MEMBER_BYTES={MAX_MEMBER_BYTES}")


def open_archive(path: Path) -> Archive:
    return FolderArchive(path) if path.is_dir() else ZipArchive(path)


# ---------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class KaggleSource:
    """Where a Kaggle VOC data set lives and how its archive is laid out."""

    dataset: str  # Kaggle "owner/slug"
    image_dir: str  # name of the folder holding the images
    annotation_dir: str  # name of the folder holding the VOC XML files
    class_names: tuple[str, ...]  # VOC <name> values that all mean "plate"

    @property
    def slug(self) -> str:
        return self.dataset.split("/")[-1]

    def archive_candidates(self, folder: Path) -> list[Path]:
        """Places in `folder` where the download may be, in the order they are tried."""
        return [folder / f"{self.slug}.zip", folder / "archive.zip", folder / self.slug,
                folder / "archive", folder]

    def manual_instructions(self) -> str:
        return textwrap.dedent(f"""\
        Download the archive of https://www.kaggle.com/datasets/{self.dataset}
        ("Download" button, or `kaggle datasets download {self.dataset}`) and put it, as
        downloaded, in the TFDS manual folder (default ~/tensorflow_datasets/downloads/manual/),
        as any one of:
          {self.slug}.zip   or  archive.zip           (the zip, not unpacked)
          {self.slug}/      or  archive/              (the folder the zip unpacks to)
          or the unpacked contents ({self.image_dir}/, ...) directly in the manual folder.
        With Kaggle credentials (~/.kaggle/kaggle.json, or KAGGLE_USERNAME and KAGGLE_KEY) and
        the `kaggle` command installed, the archive is downloaded automatically instead.
        """)


def find_archive(folder: Path, source: KaggleSource) -> Path | None:
    """The first candidate in `folder` that is a zip or holds the source's folders."""
    for candidate in source.archive_candidates(folder):
        if candidate.is_file() and zipfile.is_zipfile(candidate):
            return candidate
        # `folder` itself must hold the layout directly: a level down may be another set.
        roots = [candidate] if candidate == folder else [candidate, *_subfolders(candidate)]
        if any(_holds_layout(root, source) for root in roots):
            return candidate
    return None


def _subfolders(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_dir()] if folder.is_dir() else []


def _holds_layout(folder: Path, source: KaggleSource) -> bool:
    return (folder / source.image_dir).is_dir() and (folder / source.annotation_dir).is_dir()


def kaggle_credentials_present() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    config_dir = os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")
    return (Path(config_dir) / "kaggle.json").is_file()


def locate_archive(dl_manager: tfds.download.DownloadManager, source: KaggleSource) -> Path:
    """The archive from the manual folder, else from Kaggle; a clear error when neither works."""
    try:
        manual_dir = Path(dl_manager.manual_dir)
    except AssertionError as error:  # TFDS: the manual folder is missing or empty.
        manual_dir, looked = None, str(error).split(". Create it")[0] + "."
    if manual_dir:
        if found := find_archive(manual_dir, source):
            return found
        looked = f"No archive in the manual folder {manual_dir}."
    if not kaggle_credentials_present():
        raise MissingArchiveError(f"{looked} No Kaggle credentials either.\n"
                                  f"{source.manual_instructions()}")
    try:
        downloaded = Path(dl_manager.download_kaggle_data(source.dataset))
    except (RuntimeError, ValueError, OSError) as error:
        raise MissingArchiveError(f"{looked} The Kaggle download of {source.dataset} failed: "
                                  f"{error}\n{source.manual_instructions()}") from None
    if found := find_archive(downloaded, source):
        return found
    raise MissingArchiveError(f"The Kaggle download in {downloaded} has no "
                              f"{source.image_dir}/ folder.")


# ---------------------------------------------------------------- preparation report


class PrepReport:
    """Counts what preparation kept, skipped, clipped and dropped; ends in one log line."""

    def __init__(self, dataset: str, splits: Sequence[str]):
        self.dataset = dataset
        self.counts: collections.Counter[str] = collections.Counter()
        self.split_examples: dict[str, int] = dict.fromkeys(splits, 0)
        self._pending = set(splits)

    def skip(self, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        logger.warning("%s: skipped (%s): %s", self.dataset, reason, detail)

    def add(self, key: str, count: int = 1) -> None:
        self.counts[key] += count

    def split_done(self, split: str) -> None:
        self._pending.discard(split)
        if not self._pending:  # A warning when anything was left out, so it is seen.
            level = logging.WARNING if self.anything_lost() else logging.INFO
            logger.log(level, "%s", self.summary())

    def anything_lost(self) -> bool:
        return any(self.counts[key] for key in COUNT_KEYS[2:])

    def summary(self) -> str:
        splits = ", ".join(f"{name} {count}" for name, count in self.split_examples.items())
        counts = ", ".join(f"{key}={self.counts[key]}" for key in COUNT_KEYS)
        return f"{self.dataset} prepared ({splits}): {counts}"


# ---------------------------------------------------------------- pairing and splits


@dataclasses.dataclass(frozen=True)
class FilePair:
    stem: str
    image: str  # archive member names
    annotation: str


def pair_files(names: Sequence[str], source: KaggleSource, report: PrepReport) -> list[FilePair]:
    """Matches images and annotations by file stem; counts the unmatched and duplicates."""
    images = _files_by_stem(names, source.image_dir, IMAGE_SUFFIXES, report)
    annotations = _files_by_stem(names, source.annotation_dir, (".xml",), report)
    for stem in sorted(images.keys() - annotations.keys()):
        report.skip("image_without_annotation", images[stem])
    for stem in sorted(annotations.keys() - images.keys()):
        report.skip("annotation_without_image", annotations[stem])
    return [FilePair(stem, images[stem], annotations[stem])
            for stem in sorted(images.keys() & annotations.keys())]


def _files_by_stem(names: Sequence[str], folder: str, suffixes: tuple[str, ...],
                   report: PrepReport) -> dict[str, str]:
    found: dict[str, str] = {}
    for name in sorted(names):
        path = PurePosixPath(name)
        if ("__MACOSX" in path.parts or path.name.startswith("._")  # macOS zip debris
                or path.parent.name != folder or path.suffix.lower() not in suffixes):
            continue
        if path.stem in found:
            report.skip("duplicate_name", f"{name} (kept {found[path.stem]})")
            continue
        found[path.stem] = name
    return found


def split_of(stem: str) -> str:
    """The split of a file stem (see the module docstring for the rule)."""
    bucket = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "big") % 100
    return next(split for split, below in SPLIT_PERCENTS if bucket < below)


# ---------------------------------------------------------------- annotations


@dataclasses.dataclass
class VocAnnotation:
    size: tuple[int, int] | None  # (width, height) as the XML states it, when it does
    boxes: list[tuple[str, float, float, float, float]]  # name, xmin, ymin, xmax, ymax


def parse_annotation(data: bytes, name: str) -> VocAnnotation:
    """Reads a VOC XML file; SkipExample("malformed_xml") when it cannot be trusted."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SkipExample("malformed_xml", f"{name}: a DTD or entity declaration (refused)")
    try:
        root = ET.fromstring(data)
        size = _parse_size(root)
        boxes = [_parse_object(element) for element in root.iter("object")]
    except (ET.ParseError, ValueError, TypeError, AttributeError) as error:
        raise SkipExample("malformed_xml", f"{name}: {error}") from None
    return VocAnnotation(size, boxes)


def _parse_size(root: ET.Element) -> tuple[int, int] | None:
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width is None or height is None or int(width) <= 0 or int(height) <= 0:
        return None  # Some tools write no size or zeros: the pixels decide.
    return int(width), int(height)


def _parse_object(element: ET.Element) -> tuple[str, float, float, float, float]:
    name = element.findtext("name")
    box = element.find("bndbox")
    if name is None or box is None:
        raise ValueError("an <object> without <name> or <bndbox>")
    return (name.strip(), *(float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")))


def check_class_names(annotation: VocAnnotation, name: str, source: KaggleSource) -> None:
    for class_name, *_ in annotation.boxes:
        if class_name not in source.class_names:
            raise UnknownClassError(
                f"{name}: unknown class {class_name!r}; known: {', '.join(source.class_names)} "
                "(all mean 'plate'). Add it to the builder's SOURCE.class_names if it is a plate.")


# ---------------------------------------------------------------- images and boxes


def load_image(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS
               ) -> tuple[bytes, tuple[int, int]]:
    """Validated RGB image bytes and (width, height); SkipExample when unusable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # From the header: nothing decoded yet.
            if width * height > max_pixels:
                raise SkipExample("image_too_large", f"{name}: {width}x{height} pixels, above "
                                  f"the limit of {max_pixels}")
            image.load()  # Decodes fully: truncation and corruption surface here.
            if image.format == "JPEG" and image.mode == "RGB":
                return data, (width, height)
            return _png_bytes(image.convert("RGB")), (width, height)
    except Image.DecompressionBombError as error:
        raise SkipExample("image_too_large", f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "bad file"
        raise SkipExample("corrupt_image", f"{name}: {error}") from None


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def normalized_boxes(pixel_boxes: Sequence[Sequence[float]], width: int, height: int,
                     name: str, report: PrepReport) -> np.ndarray:
    """[N, 4] float32 ymin, xmin, ymax, xmax in [0, 1]; clips and drops with counts."""
    kept = []
    for xmin, ymin, xmax, ymax in pixel_boxes:
        clipped = (min(max(xmin, 0.0), width), min(max(ymin, 0.0), height),
                   min(max(xmax, 0.0), width), min(max(ymax, 0.0), height))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.add("boxes_dropped")
            logger.warning("%s: %s: dropped box %s (no area inside the %dx%d image)",
                            report.dataset, name, (xmin, ymin, xmax, ymax), width, height)
            continue
        if clipped != (xmin, ymin, xmax, ymax):
            report.add("boxes_clipped")
            logger.warning("%s: %s: clipped box %s to the %dx%d image", report.dataset, name,
                            (xmin, ymin, xmax, ymax), width, height)
        x0, y0, x1, y1 = clipped
        kept.append((y0 / height, x0 / width, y1 / height, x1 / width))
    return np.asarray(kept, dtype=np.float32).reshape(-1, 4)


# ---------------------------------------------------------------- examples


def make_example(archive: Archive, pair: FilePair, source: KaggleSource,
                 report: PrepReport) -> dict:
    """The TFDS example of one pair; raises SkipExample or UnknownClassError."""
    annotation = parse_annotation(archive.read(pair.annotation), pair.annotation)
    check_class_names(annotation, pair.annotation, source)
    image, size = load_image(archive.read(pair.image), pair.image)
    if annotation.size is not None and annotation.size != size:
        raise SkipExample("size_mismatch", f"{pair.annotation} says {annotation.size[0]}x"
                          f"{annotation.size[1]}, {pair.image} is {size[0]}x{size[1]}")
    boxes = normalized_boxes([b[1:] for b in annotation.boxes], *size, pair.annotation, report)
    return {
        "image": image,
        "image/filename": PurePosixPath(pair.image).name,
        "objects": {"bbox": boxes, "label": np.zeros(len(boxes), dtype=np.int64)},
    }


def generate_examples(archive: Archive, pairs: Sequence[FilePair], split: str,
                      source: KaggleSource, report: PrepReport) -> Iterator[tuple[str, dict]]:
    """(stem, example) for every usable pair; counts the rest; reports when the split ends."""
    for pair in pairs:
        try:
            example = make_example(archive, pair, source, report)
        except SkipExample as skipped:
            report.skip(skipped.reason, str(skipped))
            continue
        report.add("examples")
        report.add("boxes", len(example["objects"]["bbox"]))
        report.split_examples[split] += 1
        yield pair.stem, example
    report.split_done(split)


class VocPlatesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A Kaggle VOC plate set; subclasses set SOURCE, VERSION and the descriptions."""

    SOURCE: ClassVar[KaggleSource]
    DESCRIPTION: ClassVar[str]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.DESCRIPTION,
            features=plate_features(with_text=False),
            supervised_keys=None,
            homepage=f"https://www.kaggle.com/datasets/{self.SOURCE.dataset}",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        path = locate_archive(dl_manager, self.SOURCE)
        archive = open_archive(path)
        splits = [split for split, _ in SPLIT_PERCENTS]
        report = PrepReport(self.name, splits)
        pairs = pair_files(archive.names(), self.SOURCE, report)
        if not pairs:  # e.g. the other set's archive.zip: say so rather than build nothing.
            raise MissingArchiveError(
                f"{path} holds no image with its annotation in {self.SOURCE.image_dir}/ and "
                f"{self.SOURCE.annotation_dir}/: is it the archive of {self.SOURCE.dataset}?")
        return {split: self._generate_examples(
                    archive, [p for p in pairs if split_of(p.stem) == split], split, report)
                for split in splits}

    def _generate_examples(self, archive: Archive, pairs: Sequence[FilePair], split: str,
                           report: PrepReport) -> Iterator[tuple[str, dict]]:
        return generate_examples(archive, pairs, split, self.SOURCE, report)


def split_sizes(stems: Sequence[str]) -> dict[str, int]:
    """How many of `stems` each split gets (for the READMEs)."""
    counts = collections.Counter(split_of(stem) for stem in stems)
    return {split: counts[split] for split, _ in SPLIT_PERCENTS}

