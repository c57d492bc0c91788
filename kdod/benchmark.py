r"""Benchmarks; each writes its numbers to a JSON file (default benchmarks/<name>.json).

    python -m kdod.benchmark data       # synthetic generation and input pipeline, images/s
    python -m kdod.benchmark detector   # recipe training speed, latency, head cost, student AP50

Speed targets are checked here, never in timed tests.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from absl import flags

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


def _parse_recipe(gin_file: str, *bindings: str) -> None:
    import gin

    gin.clear_config()
    config.parse_gin([gin_file], list(bindings))


def _random_batch(image_size: int, batch_size: int) -> dict:
    import tensorflow as tf

    boxes = tf.tile(tf.constant([[[0.4, 0.3, 0.5, 0.6], [0.6, 0.1, 0.65, 0.3]]]),
                    [batch_size, 1, 1])
    return {"image": tf.random.uniform([batch_size, image_size, image_size, 3], 0, 255),
            "boxes": boxes, "labels": tf.zeros([batch_size, 2], tf.int32)}


def _recipe_speed(gin_file: str, batch_size: int = 8) -> dict:
    """Training images/s, batch-1 inference ms and parameters of a recipe's detector.

    Weights are random (the speed does not depend on them, and ImageNet is offline here).
    """
    import gin
    import keras
    import tensorflow as tf

    from kdod import registry, train_lib
    from kdod.detection.detector import Detector, DetectorConfig

    _parse_recipe(gin_file)
    detector_config = DetectorConfig()
    gin.bind_parameter(f"{detector_config.backbone}.weights", None)
    model = Detector(detector_config)
    model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
    batch = _random_batch(model.image_size, batch_size)
    train_step = tf.function(lambda: train_lib.train_batch(model, batch))
    step_s = _timed(train_step, 5)
    detect = tf.function(model.detect)
    image = batch["image"][:1]
    results = {"parameters": model.count_params(), "image_size": model.image_size,
               "train_images_per_s": batch_size / step_s,
               "inference_ms_batch_1": 1000 * _timed(lambda: detect(image), 20)}

    # The bare backbone's forward + backward with the same optimizer, for the head-cost ratio.
    backbone = registry.BACKBONES.get(detector_config.backbone)(
        input_shape=(model.image_size, model.image_size, 3))
    optimizer = train_lib.make_optimizer(total_steps=1000)

    @tf.function
    def backbone_step():
        with tf.GradientTape() as tape:
            features = backbone(batch["image"], training=True)
            loss = tf.add_n([tf.reduce_mean(f) for f in features.values()])
        optimizer.apply_gradients(zip(tape.gradient(loss, backbone.trainable_variables),
                                      backbone.trainable_variables))

    backbone_s = _timed(backbone_step, 5)
    results["head_cost_ratio"] = (step_s - backbone_s) / backbone_s
    keras.backend.clear_session()
    return results


def _train_and_evaluate(gin_file: str, model_dir: Path) -> dict:
    """Trains a recipe for its fixed number of steps, then its COCO metrics on the test split."""
    import gin

    from kdod import eval_lib, train_lib

    _parse_recipe(gin_file)
    if flags.FLAGS.data_dir:
        gin.bind_parameter("input_pipeline.data_dir", flags.FLAGS.data_dir)
    start = time.perf_counter()
    train_lib.train(str(model_dir))
    minutes = (time.perf_counter() - start) / 60
    metrics = eval_lib.evaluate(str(model_dir), split="test")
    return {"train_minutes": minutes, "steps": gin.query_parameter("train.steps"), **metrics}


def benchmark_detector() -> dict:
    """Recipe speeds (teacher, students), the head-cost ratio, and the small student's AP50."""
    recipes = {"teacher_resnet50_fpn_640": 4, "student_mobilenet_v2_fpnlite_320": 8,
               "student_small": 16}
    results: dict = {"speed": {name: _recipe_speed(str(REPO_GIN / f"{name}.gin"), batch)
                               for name, batch in recipes.items()}}
    small = _train_and_evaluate(str(REPO_GIN / "student_small.gin"),
                                Path(flags.FLAGS.output or "benchmarks/detector.json").parent
                                / "runs" / "student_small")
    results["student_small_synthetic_test"] = small
    results["targets"] = {"student_small_AP50": 0.9, "head_cost_ratio_max": 1.5}
    results["student_small_meets_AP50"] = small["AP50"] >= 0.9
    return results


BENCHMARKS: dict[str, Callable[[], dict]] = {"data": benchmark_data,
                                             "detector": benchmark_detector}


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
        print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
        print(f"Wrote {output}")


if __name__ == "__main__":
    config.run(main)
