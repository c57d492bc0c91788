"""Train-then-evaluate runs shared by the demo and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import gin
import tensorflow as tf

from kdod import checkpoints, config, eval_lib, train_lib
from kdod.detection.detector import Detector
from kdod.timing import seconds_per_call


def latency_ms(model: Detector, repeats: int = 30) -> float:
    """Batch-1 CPU latency of `model.detect` (decode + NMS included), after a warm-up call."""
    detect = tf.function(model.detect)
    image = tf.zeros([1, model.image_size, model.image_size, 3], tf.uint8)
    return 1000 * seconds_per_call(lambda: detect(image), repeats)


def train_and_evaluate(gin_files: Sequence[str], bindings: Sequence[str], model_dir: str | Path,
                       num_visualizations: int = 0, split: str | None = "test",
                       strategy: tf.distribute.Strategy | None = None) -> dict:
    """Trains (or resumes) a recipe under a fresh gin config, then its COCO metrics on `split`
    (None: the splits of the recipe's evaluation sources), under `strategy` if given.

    Returns the metrics plus parameters, batch-1 latency (ms) and training minutes (all the
    sittings of a resumed run).
    """
    gin.clear_config()
    config.parse_gin(gin_files, bindings)
    start = time.perf_counter()
    train_lib.train(str(model_dir), strategy=strategy)
    # A resumed run's time includes its earlier sittings (recorded with its checkpoints).
    minutes = (checkpoints.training_seconds(model_dir) or time.perf_counter() - start) / 60
    metrics = eval_lib.evaluate(str(model_dir), split=split,
                                num_visualizations=num_visualizations, strategy=strategy)
    detector = eval_lib.load_trained(str(model_dir))
    return {**metrics, "parameters": detector.count_params(),
            "latency_ms": latency_ms(detector), "train_minutes": minutes}
