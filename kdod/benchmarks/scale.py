"""scale: what the teacher cache and MirroredStrategy buy.

    python -m kdod.benchmark scale [--seeds 3 --teacher_steps 1000 --student_steps 600]

- step time of distillation from a teacher cache, and online (the teacher run every step), as
  ratios to the plain student's step, on the same batch in one process;
- AP of the kl_ssd recipe distilled from the cache and online, over seeds (each seed's cache
  augmented with its seed), from one teacher_small;
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
import tensorflow as tf

from kdod import train_lib, train_step
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, mean_std, parse_recipe, random_batch, recipe
from kdod.cache_teacher_lib import make_cache
from kdod.data import cache
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import DistillerConfig, build_distiller
from kdod.experiment import train_and_evaluate
from kdod.files import write_json
from kdod.timing import seconds_per_call

TEACHER, STUDENT, DISTILLED = "teacher_small.gin", "student_small.gin", "kl_ssd.gin"


def bindings(options: BenchmarkOptions, seed: int, teacher_dir: Path,
             teacher_cache: Path | None = None) -> list[str]:
    """The distilled runs' bindings: data, seed, student steps, teacher (and cache)."""
    given = [options.data_binding, *options.bindings, f"train.seed = {seed}",
             f"train.steps = {options.student_steps}",
             f"DistillerConfig.teacher_dir = '{teacher_dir}'"]
    return given + ([f"DistillerConfig.teacher_cache = '{teacher_cache}'"] if teacher_cache
                    else [])


def cached_batch(teacher_cache: Path) -> dict[str, tf.Tensor]:
    """A training batch of the cache (the gin config of the moment's batch size)."""
    with gin.config_scope("train"):
        batches = input_pipeline(image_size=cache.load_manifest(teacher_cache)["image_size"],
                                 teacher_cache=str(teacher_cache))
    return {k: v for k, v in next(iter(batches)).items() if v.dtype != tf.string}


def step_times(distilled_bindings: list[str], teacher_cache: Path, repeats: int = 10) -> dict:
    """Seconds per training step of the student alone, distilled from the cache and online, on
    one batch of the cache; their ratios to the student's."""
    parse_recipe(recipe(DISTILLED), *distilled_bindings)
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
    results = {"AP": per_model, "cached_minus_online_AP_points": difference,
               "seeds": len(ap["cached"]), "step_time": timing,
               "cached_step_ratio": timing["cached_step_ratio"],
               "online_step_ratio": timing["online_step_ratio"],
               "cache_MB_per_image": bytes_per_image / 1e6, "mirrored": mirrored}
    return {**results, **targets.check("scale", results)}


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
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(options: BenchmarkOptions) -> dict:
    """The teacher, then per seed a cache and the cached and online students; then timings."""
    runs = options.runs_dir / "scale"
    teacher_dir = runs / "teacher"
    train_and_evaluate([recipe(TEACHER)], [options.data_binding, *options.bindings,
                                           f"train.steps = {options.teacher_steps}"],
                       teacher_dir)
    ap: dict[str, list[float]] = {"cached": [], "online": []}
    for seed in range(options.seeds):
        teacher_cache = runs / f"cache_seed{seed}"
        if not (teacher_cache / cache.MANIFEST).is_file():
            parse_recipe(recipe(DISTILLED), *bindings(options, seed, teacher_dir))
            make_cache(teacher_cache)
        for name, used in (("cached", teacher_cache), ("online", None)):
            metrics = train_and_evaluate([recipe(DISTILLED)],
                                         bindings(options, seed, teacher_dir, used),
                                         runs / f"{name}_seed{seed}")
            ap[name].append(metrics["AP"])
        write_json(options.output_path("scale"), {"benchmark": "scale", "partial": True,
                                                  "AP": ap})
    first_cache = runs / "cache_seed0"
    timing = step_times(bindings(options, 0, teacher_dir, first_cache), first_cache)
    return {"steps": {"teacher": options.teacher_steps, "students": options.student_steps},
            **summary(ap, timing, cache.bytes_per_example(first_cache),
                      mirrored_throughput(options))}
