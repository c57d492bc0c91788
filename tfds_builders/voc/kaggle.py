"""Kaggle sources: where a VOC set's archive is, in the TFDS manual folder or from Kaggle.

A `KaggleSource` names the Kaggle data set and its archive's layout. `locate_archive` looks in
the manual folder first (the zip as downloaded, the folder it unpacks to, or its contents),
then downloads with TFDS when Kaggle credentials are there, and otherwise fails with
instructions for downloading by hand.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import zipfile
from pathlib import Path

import tensorflow_datasets as tfds

from kdod.errors import KdodError


class MissingArchiveError(KdodError):
    """The archive is neither in the manual folder nor downloadable from Kaggle."""


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
