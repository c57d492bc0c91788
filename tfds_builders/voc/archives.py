"""Archives: reading the members of the Kaggle zip, or of the folder it unpacks to, safely.

Nothing is extracted. A member whose path leaves the archive's folder (zip-slip, an absolute
or drive path, a symbolic link out of an unpacked folder) refuses the whole archive; a member
above `MAX_MEMBER_BYTES` is skipped as one `oversized_file`.
"""

from __future__ import annotations

import os
import posixpath
import stat
import zipfile
from pathlib import Path
from typing import Protocol

from kdod.errors import KdodError
from tfds_builders.voc.report import SkipExample

MAX_MEMBER_BYTES = 200 * 2**20  # No image or XML file of these sets comes near 200 MiB.


class UnsafeArchiveError(KdodError):
    """An archive member's path leaves the archive's folder."""


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
    """The zip at `path`, or the unpacked folder when `path` is one."""
    return FolderArchive(path) if path.is_dir() else ZipArchive(path)
