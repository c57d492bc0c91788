"""Small file helpers shared by the entry points and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def write_json(path: str | Path, data: Mapping) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
