"""Small file helpers shared by the entry points and benchmarks."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def written_whole(path: str | Path) -> Iterator[Path]:
    """Yields a partial-<name> file to write instead of `path`, renamed to `path` when the block
    ends (removed when it fails): a kill or an error midway leaves the previous file (a results
    ledger, a run's training times) intact, and no half file under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name("partial-" + path.name)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)


def files_digest(files: Iterable[Path], root: Path) -> str:
    """SHA-256 over each file's path relative to `root` and its bytes: changes with any of them."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        with open(path, "rb") as file:
            digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()


def write_json(path: str | Path, data: Mapping) -> None:
    """Writes `data` to `path` as indented JSON, whole or not at all (`written_whole`)."""
    with written_whole(path) as partial:
        partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Writes a header row and `rows` to `path` as CSV, whole or not at all (`written_whole`)."""
    with written_whole(path) as partial, open(partial, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


def filename_text_rows(path: str | Path, error: type[Exception]) -> Iterator[tuple[int, str, str]]:
    """(line number, file name, text) of each row of a `filename,plate_text` CSV; blank lines
    and a header row are skipped, a row with one column is an `error` naming its line."""
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), 1):
            if not row or (number == 1 and [c.strip().lower() for c in row[:2]]
                           == ["filename", "plate_text"]):
                continue
            if len(row) < 2:
                raise error(f"{path}:{number}: expected 'filename,plate_text', got {row}.")
            yield number, row[0].strip(), row[1]
