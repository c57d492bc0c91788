"""data: synthetic scene generation and the augmented input pipeline, images/s at 320x320.

    python -m kdod.benchmark data
"""

from __future__ import annotations

import os
import time

from kdod.benchmarks import targets
from kdod.benchmarks.common import SYNTHETIC, BenchmarkOptions, prepared_synthetic
from kdod.data.pipeline import input_pipeline
from kdod.timing import seconds_per_call
from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_lib

SCENES = 400  # Rendered by the pool; the first quarter also by one process.
BATCH_SIZE = 32


def generation_speed() -> dict[str, float]:
    """Scenes rendered per second by one process and by a pool of one worker per CPU."""
    scene_config = builder_lib.Builder.builder_configs["quick"].scene_config()
    jobs = [("benchmark", i, 0, scene_config) for i in range(SCENES)]
    sequential = jobs[:len(jobs) // 4]
    start = time.perf_counter()
    for job in sequential:
        builder_lib.render_example(job)
    single = len(sequential) / (time.perf_counter() - start)
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    # The builder's own pool context (fork where there is one), as dataset generation uses.
    with builder_lib._pool_context().Pool(workers) as pool:
        for _ in pool.imap(builder_lib.render_example, jobs, chunksize=8):
            pass
    parallel = len(jobs) / (time.perf_counter() - start)
    return {"generation_images_per_s_1_process": single,
            f"generation_images_per_s_{workers}_processes": parallel}


def pipeline_speed(options: BenchmarkOptions) -> dict[str, float]:
    """Images per second out of the training (augmented) and evaluation (letterboxed) pipeline."""
    prepared_synthetic(options)
    results = {}
    for training in (True, False):
        dataset = input_pipeline(sources=[(SYNTHETIC, "train", 1.0)], image_size=320,
                                 batch_size=BATCH_SIZE, training=training,
                                 data_dir=options.data_dir)
        iterator = iter(dataset.repeat())
        seconds = seconds_per_call(lambda it=iterator: next(it), options.num_batches)
        kind = "augmented" if training else "letterboxed"
        results[f"pipeline_images_per_s_{kind}"] = BATCH_SIZE / seconds
    return results


def run(options: BenchmarkOptions) -> dict:
    results = {**generation_speed(), **pipeline_speed(options)}
    return {**results, **targets.check("data", results)}
