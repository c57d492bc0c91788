"""The builder: file pairs, splits and examples, and `VocPlatesBuilder`, the builders' base.

Images and annotations are paired by file stem; each pair goes to the split its stem hashes to
(`split_of`) and becomes one example, or is skipped and counted. Subclasses only set a
`KaggleSource`, a version and the descriptions.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.features import plate_features
from tfds_builders.voc.annotations import check_class_names, normalized_boxes, parse_annotation
from tfds_builders.voc.archives import Archive, open_archive
from tfds_builders.voc.images import load_image
from tfds_builders.voc.kaggle import KaggleSource, MissingArchiveError, locate_archive
from tfds_builders.voc.report import PrepReport, SkipExample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_PERCENTS = (("train", 80), ("validation", 90), ("test", 100))  # cumulative


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
    """The split of a file stem: SHA-256 of it, first 8 bytes big-endian, modulo 100."""
    bucket = int.from_bytes(hashlib.sha256(stem.encode()).digest()[:8], "big") % 100
    return next(split for split, below in SPLIT_PERCENTS if bucket < below)


def split_sizes(stems: Sequence[str]) -> dict[str, int]:
    """How many of `stems` each split gets (for the READMEs)."""
    counts = collections.Counter(split_of(stem) for stem in stems)
    return {split: counts[split] for split, _ in SPLIT_PERCENTS}


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
