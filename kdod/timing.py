"""Wall-clock timing shared by the demo and the benchmarks (no TensorFlow import)."""

from __future__ import annotations

import time
from collections.abc import Callable


def seconds_per_call(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call of `fn`, after one untimed warm-up call (tracing, caches)."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats
