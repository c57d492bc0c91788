"""The preparation report: what was kept, skipped, clipped and dropped, ended in one log line.

`SkipExample` is how every reading step says that one file pair cannot be used; the builder
catches it and counts its reason here.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence

logger = logging.getLogger(__name__)

# Every count the final log line reports, in its order.
COUNT_KEYS = ("examples", "boxes", "image_without_annotation", "annotation_without_image",
              "duplicate_name", "oversized_file", "corrupt_image", "image_too_large",
              "malformed_xml",
              "size_mismatch", "boxes_clipped", "boxes_dropped")


class SkipExample(Exception):
    """One file pair cannot be used; `reason` is one of COUNT_KEYS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


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
