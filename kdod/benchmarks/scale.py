"""scale: what the teacher cache and MirroredStrategy buy.

    python -m kdod.benchmark scale [--seeds 3]

- AP on the 87 real test images of the real-plates student distilled with PKD from a teacher
  cache and online (the teacher run every step), over seeds: the `real` benchmark's two runs
  of each seed (kdod/benchmarks/real.py), recorded in its results file (benchmarks/real.json)
  and trained here if they are not; each seed's cache holds the batches that seed's online run
  trains on. Target: the difference within two standard errors (seed noise);
- step time of the cached and online distillation as ratios to the plain student's step, on
  one batch of a small cache of seed 0's recipe, in one process;
- the cache's size per image;
- student training throughput under MirroredStrategy over 2 logical CPU devices vs 1 device
  (in a subprocess: logical devices are set before TensorFlow starts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import gin
import numpy as np
import tensorflow as tf

from kdod import train_lib, train_step
from kdod.benchmarks import real, targets
from kdod.benchmarks.common import BenchmarkOptions, mean_std, parse_recipe, random_batch, recipe
from kdod.benchmarks.study import Ledger, Run, measure_all
from kdod.cache_teacher_lib import make_cache
from kdod.data import cache
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import DistillerConfig, build_distiller
from kdod.errors import KdodError
from kdod.timing import seconds_per_call

STUDENT = "student_small.gin"  # MirroredStrategy's throughput: the synthetic student.
# The real study's pair of PKD runs: the same recipe online and from the cache.
ONLINE, CACHED = "feature_imitation (PKD)", "feature_imitation (PKD), teacher cache"
TIMING_EXAMPLES = 64  # In the small cache the step times are measured on.


def cached_batch(teacher_cache: Path) -> dict[str, tf.Tensor]:
    """A training batch of the cache (the gin config of the moment's batch size)."""
    with gin.config_scope("train"):
        batches = input_pipeline(image_size=cache.load_manifest(teacher_cache)["image_size"],
                                 teacher_cache=str(teacher_cache))
    return {k: v for k, v in next(iter(batches)).items() if v.dtype != tf.string}


def step_times(cached_run: Run, teacher_cache: Path, repeats: int = 10) -> dict:
    """Seconds per training step of the student alone, distilled from the cache and online, on
    one batch of the cache (made for `cached_run`'s recipe); their ratios to the student's."""
    cached_run.parse()
    gin.bind_parameter("DistillerConfig.teacher_cache", str(teacher_cache))
    models = {"student": Detector(DetectorConfig()),
              "cached": build_distiller(DistillerConfig()),
              "online": build_distiller(DistillerConfig(teacher_cache=None))}
    batch = cached_batch(teacher_cache)
    seconds = {}
    for name, model in models.items():
        model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
        step = tf.function(lambda model=model: train_step.train_batch(model, batch))
        seconds[f"{name}_step_s"] = seconds_per_call(step, repeats)
    return {**seconds, "batch_size": int(batch["image"].shape[0]),
            "cached_step_ratio": seconds["cached_step_s"] / seconds["student_step_s"],
            "online_step_ratio": seconds["online_step_s"] / seconds["student_step_s"]}


def summary(ap: dict[str, list[float]], timing: dict, bytes_per_image: float,
            mirrored: dict) -> dict:
    """AP mean +- std of the cached and online students, their difference, the step ratios,
    the cache size per image and the MirroredStrategy speed-up, with the targets."""
    per_model = {name: mean_std(values) for name, values in ap.items()}
    difference = 100 * (per_model["cached"]["mean"] - per_model["online"]["mean"])
    error = standard_error_of_difference(ap["cached"], ap["online"])
    results = {"AP": per_model, "cached_minus_online_AP_points": difference,
               "AP_difference_standard_errors": abs(difference) / (100 * error) if error else None,
               "seeds": len(ap["cached"]), "step_time": timing,
               "cached_step_ratio": timing["cached_step_ratio"],
               "online_step_ratio": timing["online_step_ratio"],
               "cache_MB_per_image": bytes_per_image / 1e6, "mirrored": mirrored}
    return {**results, **targets.check("scale", results)}


def standard_error_of_difference(first: list[float], second: list[float]) -> float | None:
    """The standard error of mean(first) - mean(second), seeds independent (sample variances);
    None with fewer than two values in either."""
    if min(len(first), len(second)) < 2:
        return None
    return float(np.sqrt(np.var(first, ddof=1) / len(first) + np.var(second, ddof=1) / len(second)))


THROUGHPUT = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kdod.benchmarks.scale import student_images_per_s
print(json.dumps(student_images_per_s(*json.loads(sys.argv[1]))))
"""


def student_images_per_s(gin_file: str, bindings: list[str], batch_size: int,
                         steps: int) -> dict:
    """Training images/s of the student of `gin_file` (Keras fit, one batch over and over) on
    one device and under MirroredStrategy over every logical device (the global batch split)."""
    from kdod import distribute

    parse_recipe(gin_file, *bindings)
    speeds = {}
    for name in ("default", "mirrored"):
        strategy = distribute.make_strategy(name)
        with distribute.scope(strategy):
            model = Detector(DetectorConfig())
            model.compile(optimizer=train_lib.make_optimizer(total_steps=1000), jit_compile=False)
            batch = random_batch(model.image_size, batch_size)
            model(batch["image"][:1])  # Built in the scope: fit cannot build a dict-input model.
        data = tf.data.Dataset.from_tensors(batch).repeat()
        model.fit(data, steps_per_epoch=2, verbose=0)  # Tracing and warm-up.
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, verbose=0)
        speeds[f"{name}_images_per_s"] = steps * batch_size / (time.perf_counter() - start)
        speeds[f"{name}_replicas"] = distribute.replicas(strategy)
    return {**speeds, "speedup": speeds["mirrored_images_per_s"] / speeds["default_images_per_s"]}


def mirrored_throughput(options: BenchmarkOptions, batch_size: int = 16) -> dict:
    """`student_images_per_s` of student_small in a process with 2 logical CPU devices."""
    arguments = json.dumps([recipe(STUDENT), [options.data_binding, *options.bindings],
                            batch_size, max(options.num_batches // 10, 3)])
    result = subprocess.run([sys.executable, "-c", THROUGHPUT, arguments], capture_output=True,
                            text=True, check=False)
    if result.returncode:
        raise KdodError(f"The MirroredStrategy throughput process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(options: BenchmarkOptions) -> dict:
    """The real study's cached and online PKD runs of every seed; then the timings on a small
    cache of seed 0's recipe, its size per image and the MirroredStrategy throughput."""
    ledger = Ledger(options.output_path("scale").with_name("real.json"), real.METRICS)
    plans = [real.seed_plan(options, seed) for seed in range(options.seeds)]
    measured = measure_all([run for plan in plans for run in plan
                            if run.model in (ONLINE, CACHED)], ledger, strategy=options.strategy)
    ap = {"cached": [m["AP"] for m in measured[CACHED]],
          "online": [m["AP"] for m in measured[ONLINE]]}
    if not options.chief:  # The chief times its machine's steps and writes the results.
        return {"AP": ap}
    first = next(run for run in plans[0] if run.model == CACHED)
    timing_cache = options.runs_dir / "scale" / "timing_cache"
    if not (timing_cache / cache.MANIFEST).is_file():
        first.parse()
        make_cache(timing_cache, examples=TIMING_EXAMPLES)
    cache_minutes = mean_std([m["teacher_cache_minutes"] for m in measured[CACHED]])
    return {"recipe": {"online": ONLINE, "cached": CACHED}, "teacher_cache_minutes": cache_minutes,
            **summary(ap, step_times(first, timing_cache), cache.bytes_per_example(timing_cache),
                      mirrored_throughput(options))}
