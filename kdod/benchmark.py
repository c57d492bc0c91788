r"""Benchmarks; each writes its numbers to a JSON file (default benchmarks/<name>.json).

    python -m kdod.benchmark data       # synthetic generation and input pipeline, images/s
    python -m kdod.benchmark detector   # recipe training speed, latency, head cost, student AP50

Speed targets are checked here, never in timed tests.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from absl import flags, logging

from kdod import config

flags.DEFINE_string("output", None, "JSON file for the results (default benchmarks/<name>.json).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS's own).")
flags.DEFINE_integer("num_batches", 100, "Batches timed for throughput numbers.")

REPO_GIN = Path(__file__).resolve().parents[1] / "gin"


def _timed(fn: Callable[[], object], repeats: int) -> float:
    """Seconds per call of `fn`, after one untimed warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def benchmark_data() -> dict:
    """Synthetic scene generation and the augmented input pipeline, both at 320x320."""
    import tensorflow_datasets as tfds

    from kdod.data.pipeline import input_pipeline
    from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_lib

    scene_config = builder_lib.Builder.builder_configs["quick"].scene_config()
    jobs = [("benchmark", i, 0, scene_config) for i in range(400)]
    start = time.perf_counter()
    for job in jobs[:100]:
        builder_lib.render_example(job)
    single = 100 / (time.perf_counter() - start)
    workers = os.cpu_count() or 1
    start = time.perf_counter()
    with builder_lib._pool_context().Pool(workers) as pool:
        for _ in pool.imap(builder_lib.render_example, jobs, chunksize=8):
            pass
    parallel = len(jobs) / (time.perf_counter() - start)

    data_dir = flags.FLAGS.data_dir
    tfds.builder("synthetic_plates/quick", data_dir=data_dir).download_and_prepare()
    batch_size = 32
    results = {"generation_images_per_s_1_process": single,
               f"generation_images_per_s_{workers}_processes": parallel}
    for training in (True, False):
        dataset = input_pipeline(sources=[("synthetic_plates/quick", "train", 1.0)],
                                 image_size=320, batch_size=batch_size, training=training,
                                 data_dir=data_dir)
        iterator = iter(dataset.repeat())
        seconds = _timed(lambda: next(iterator), flags.FLAGS.num_batches)
        kind = "augmented" if training else "letterboxed"
        results[f"pipeline_images_per_s_{kind}"] = batch_size / seconds
    results["pipeline_target_images_per_s"] = 300
    results["pipeline_meets_target"] = results["pipeline_images_per_s_augmented"] >= 300
    return results


BENCHMARKS: dict[str, Callable[[], dict]] = {"data": benchmark_data}


def _machine() -> dict:
    import tensorflow as tf

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str]) -> None:
    names = argv[1:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if not names or unknown:
        raise config.ConfigError(f"Name a benchmark: {', '.join(BENCHMARKS)} "
                                 f"(got {' '.join(argv[1:]) or 'none'}).")
    config.parse_flags_gin()
    for name in names:
        results = {"benchmark": name, "machine": _machine(), **BENCHMARKS[name]()}
        output = Path(flags.FLAGS.output or f"benchmarks/{name}.json")
        from kdod.train_lib import write_json

        write_json(output, results)
        logging.info("Wrote %s", output)
        print(f"{name}: " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in results.items() if k not in ("machine",
                                                                               "benchmark")))


if __name__ == "__main__":
    config.run(main)
