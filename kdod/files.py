"""Small file helpers shared by the entry points and benchmarks."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path


def write_json(path: str | Path, data: Mapping) -> None:
    """Writes `data` to `path` through a partial-<name> file renamed when whole: a kill midway
    leaves the previous file (a results ledger, a run's training times) intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name("partial-" + path.name)
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


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
