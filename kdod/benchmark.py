r"""Benchmarks; each writes its numbers to a JSON file (default benchmarks/<name>.json).

    python -m kdod.benchmark data       # synthetic generation and input pipeline, images/s
    python -m kdod.benchmark detector   # recipe training speed, latency, head cost, student AP50
    python -m kdod.benchmark distill    # teacher / student / distilled AP over seeds, step cost
    python -m kdod.benchmark ocr        # exact match, CER and ms per plate of each OCR engine
    python -m kdod.benchmark export     # size, latency and AP of Keras/SavedModel/TFLite forms

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
from kdod.timing import seconds_per_call

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("output", None, "JSON file for the results (default benchmarks/<name>.json).")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS's own).")
flags.DEFINE_integer("num_batches", 100, "Batches timed for throughput numbers.")
flags.DEFINE_integer("seeds", 3, "distill: seeds per model.")
flags.DEFINE_integer("teacher_steps", 1000, "distill: training steps of each teacher.")
flags.DEFINE_integer("student_steps", 600, "distill: training steps of each student.")

REPO_GIN = Path(__file__).resolve().parents[1] / "gin"


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
        seconds = seconds_per_call(lambda it=iterator: next(it), flags.FLAGS.num_batches)
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
    from kdod.experiment import latency_ms

    _parse_recipe(gin_file)
    detector_config = DetectorConfig()
    gin.bind_parameter(f"{detector_config.backbone}.weights", None)
    model = Detector(detector_config)
    model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
    batch = _random_batch(model.image_size, batch_size)
    train_step = tf.function(lambda: train_lib.train_batch(model, batch))
    step_s = seconds_per_call(train_step, 5)
    results = {"parameters": model.count_params(), "image_size": model.image_size,
               "train_images_per_s": batch_size / step_s,
               "inference_ms_batch_1": latency_ms(model, 20)}

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

    backbone_s = seconds_per_call(backbone_step, 5)
    results["head_cost_ratio"] = (step_s - backbone_s) / backbone_s
    keras.backend.clear_session()
    return results


def _output_path(name: str) -> Path:
    return Path(flags.FLAGS.output or f"benchmarks/{name}.json")


def _runs_dir() -> Path:
    """Where benchmark training runs go: beside the results file."""
    return _output_path("x").parent / "runs"


def benchmark_detector() -> dict:
    """Recipe speeds (teacher, students), the head-cost ratio, and the small student's AP50."""
    recipes = {"teacher_resnet50_fpn_640": 4, "student_mobilenet_v2_fpnlite_320": 8,
               "student_small": 16}
    results: dict = {"speed": {name: _recipe_speed(str(REPO_GIN / f"{name}.gin"), batch)
                               for name, batch in recipes.items()}}
    from kdod.experiment import train_and_evaluate

    bindings = [f"input_pipeline.data_dir = {flags.FLAGS.data_dir!r}"]
    small = train_and_evaluate([str(REPO_GIN / "student_small.gin")], bindings,
                               _runs_dir() / "student_small")
    results["student_small_synthetic_test"] = small
    results["targets"] = {"student_small_AP50": 0.9, "head_cost_ratio_max": 1.5}
    results["student_small_meets_AP50"] = small["AP50"] >= 0.9
    return results


DISTILL_RECIPES = {"kl_logits": "kl_ssd.gin", "feature_imitation": "feature_ssd.gin",
                   "box (bounded + imitation)": "box_ssd.gin", "combined": "combined_ssd.gin"}


def _distill_step_ratio(teacher_dir: Path, batch_size: int = 16) -> dict:
    """Distillation step time / (student step + teacher forward), same batch, same process."""
    import tensorflow as tf

    from kdod import train_lib
    from kdod.detection.detector import Detector, DetectorConfig
    from kdod.distill.distiller import build_distiller

    _parse_recipe(str(REPO_GIN / "combined_ssd.gin"), f"Distiller.teacher_dir = '{teacher_dir}'")
    distiller = build_distiller()
    student = Detector(DetectorConfig())
    for model in (distiller, student):
        model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
    batch = {**_random_batch(student.image_size, batch_size)}
    distill_s = seconds_per_call(tf.function(lambda: train_lib.train_batch(distiller, batch)), 10)
    student_s = seconds_per_call(tf.function(lambda: train_lib.train_batch(student, batch)), 10)
    teacher = distiller.teacher
    teacher_s = seconds_per_call(tf.function(lambda: teacher(batch["image"], training=False)), 10)
    return {"distill_step_s": distill_s, "student_step_s": student_s,
            "teacher_forward_s": teacher_s, "ratio": distill_s / (student_s + teacher_s),
            "target_max": 1.1}


def _summarize(values: list[float]) -> dict:
    import numpy as np

    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def benchmark_distill() -> dict:
    """Teacher, student alone and each distillation recipe over seeds: COCO AP mean +- std.

    Writes the results so far after each seed (marked partial), so a long run that is
    stopped keeps what it measured; run again, it resumes the unfinished runs.
    """
    from kdod.experiment import train_and_evaluate
    from kdod.train_lib import write_json

    runs = _runs_dir() / "distill"
    data = f"input_pipeline.data_dir = {flags.FLAGS.data_dir!r}"
    steps = f"train.steps = {flags.FLAGS.student_steps}"
    ap: dict[str, list[float]] = {}
    for seed in range(flags.FLAGS.seeds):
        common = [data, f"train.seed = {seed}"]
        teacher_dir = runs / f"seed{seed}" / "teacher"
        plan = [("teacher", "teacher_small.gin", teacher_dir,
                 [f"train.steps = {flags.FLAGS.teacher_steps}"]),
                ("student alone", "student_small.gin", runs / f"seed{seed}" / "student", [steps])]
        plan += [(name, recipe, runs / f"seed{seed}" / recipe.removesuffix(".gin"),
                  [steps, f"Distiller.teacher_dir = '{teacher_dir}'"])
                 for name, recipe in DISTILL_RECIPES.items()]
        for name, recipe, model_dir, bindings in plan:
            metrics = train_and_evaluate([str(REPO_GIN / recipe)], common + bindings, model_dir)
            ap.setdefault(name, []).append(metrics["AP"])
        write_json(_output_path("distill"), {"benchmark": "distill", "partial": True,
                                             **_distill_summary(ap)})
    results = _distill_summary(ap)
    step_time = _distill_step_ratio(runs / "seed0" / "teacher")
    return {**results, "step_time": step_time,
            "meets_targets": results["meets_targets"] and step_time["ratio"] <= 1.1}


def _distill_summary(ap: dict[str, list[float]]) -> dict:
    """Mean +- std AP per model, and the best recipe's gain and share of the gap recovered."""
    summary = {name: _summarize(values) for name, values in ap.items()}
    student, teacher = summary["student alone"]["mean"], summary["teacher"]["mean"]
    best = max(DISTILL_RECIPES, key=lambda name: summary[name]["mean"])
    gain = summary[best]["mean"] - student
    recovered = gain / (teacher - student) if teacher > student else float("nan")
    return {"steps": {"teacher": flags.FLAGS.teacher_steps, "students": flags.FLAGS.student_steps},
            "seeds": len(ap["teacher"]), "recipes": DISTILL_RECIPES, "AP": summary,
            "best_recipe": best, "best_gain_AP_points": 100 * gain, "gap_recovered": recovered,
            "targets": {"gain_AP_points_min": 2.0, "gap_recovered_min": 0.5},
            "meets_targets": 100 * gain >= 2.0 and recovered >= 0.5}


def benchmark_ocr(scenes: int = 100, legible_px: int = 24) -> dict:
    """OCR alone on plate crops of known text from the synthetic test split, per engine.

    Exact match, CER and ms per plate, for three read modes: every line joined, the
    registration line selected, and selected + format-guided correction. Sets: the first
    `scenes` test scenes as stored (lighting, blur, noise, JPEG, plates down to ~10 px high),
    and the same scenes rendered clean (no effects), split into plates at least `legible_px`
    high ("clean", where the best engine must read >= 95%) and smaller ones ("clean_small").
    """
    import tensorflow_datasets as tfds

    from kdod import registry
    from kdod.data import synthetic
    from kdod.errors import KdodError
    from kdod.metrics.text import evaluate_reader
    from kdod.ocr import postprocess
    from tfds_builders.synthetic_plates import synthetic_plates_dataset_builder as builder_lib

    builder = tfds.builder("synthetic_plates/quick", data_dir=flags.FLAGS.data_dir)
    builder.download_and_prepare()
    margin = postprocess.CropPreparation.margin
    sets: dict[str, tuple[list, list]] = {"test": ([], []), "clean": ([], []),
                                          "clean_small": ([], [])}
    for example in tfds.as_numpy(builder.as_dataset(split=f"test[:{scenes}]")):
        for box, text in zip(example["objects"]["bbox"], example["objects"]["text"]):
            sets["test"][0].append(postprocess.crop_box(example["image"], box, margin))
            sets["test"][1].append(text.decode())
    clean_config = builder.builder_config.scene_config().without_effects()
    for index in range(scenes):
        seed = builder_lib.scene_seed(builder.builder_config.seed, "test", index)
        scene = synthetic.render_scene(seed, clean_config)
        for box, text in zip(scene.boxes, scene.texts):
            legible = (box[2] - box[0]) * clean_config.height >= legible_px
            crops, texts = sets["clean" if legible else "clean_small"]
            crops.append(postprocess.crop_box(scene.image, box, margin))
            texts.append(text)

    results: dict = {"plates": {name: len(texts) for name, (_, texts) in sets.items()},
                     "legible_px": legible_px, "formats": "synthetic", "engines": {}}
    for engine in registry.OCR_BACKENDS.list():
        try:
            reader = registry.OCR_BACKENDS.build(engine)
        except KdodError as error:
            results["engines"][engine] = {"unavailable": str(error)}
            continue
        results["engines"][engine] = {name: evaluate_reader(reader, crops, texts, "synthetic")
                                      for name, (crops, texts) in sets.items()}
    clean = {engine: r["clean"]["selected_formats"]["exact_match"]
             for engine, r in results["engines"].items() if "clean" in r}
    best = max(clean, key=clean.get) if clean else None
    results["best_engine_clean"] = best
    results["target_clean_exact_match"] = 0.95
    results["meets_target"] = bool(best) and clean[best] >= 0.95
    return results


def _exported_forms(model_dir: Path, image) -> dict:
    """Exports the run in every form and measures each (see `_measure_export`)."""
    from kdod import eval_lib, export_lib

    detector = eval_lib.load_trained(model_dir)
    export_dir = model_dir / "export"
    forms = {"saved_model": export_lib.export(detector, export_dir, "saved_model",
                                              model_dir=model_dir)}
    for quantize in ("float32", "float16", "int8"):
        forms[f"tflite_{quantize}"] = export_lib.export(detector, export_dir, "tflite", quantize,
                                                        model_dir=model_dir)
    return {name: _measure_export(path, image) for name, path in forms.items()}


def _measure_export(path: Path, image) -> dict:
    """Size (MB), batch-1 latency (ms) on `image` and COCO metrics on test of one export."""
    from kdod import eval_lib, export_lib

    loaded = export_lib.load_exported(path, num_threads=2)
    files = [path, *path.rglob("*")] if path.is_dir() else [path]
    results = {"size_mb": sum(p.stat().st_size for p in files if p.is_file()) / 2**20,
               "latency_ms": 1000 * seconds_per_call(lambda: loaded.detect_image(image), 30),
               **eval_lib.evaluate_exported(path, split="test")}
    if isinstance(loaded, export_lib.TfliteDetector):  # The interpreter alone, without NMS.
        results["network_ms"] = 1000 * seconds_per_call(lambda: loaded.network(image[None]), 50)
    return results


def benchmark_export() -> dict:
    """Teacher and student in every form: file size, batch-1 latency (2 threads), COCO AP.

    Keras latency is `detect` (network, decoding, NMS) on a model-size image; exported
    latencies are `detect_image` on the same image (letterbox, network, decoding, NMS), and
    for TFLite also the interpreter alone (network_ms).
    """
    import numpy as np
    import tensorflow as tf

    from kdod import eval_lib, train_lib
    from kdod.experiment import latency_ms, train_and_evaluate

    tf.config.threading.set_intra_op_parallelism_threads(2)
    runs = _runs_dir() / "export"
    data = f"input_pipeline.data_dir = {flags.FLAGS.data_dir!r}"
    plan = {"teacher": ("teacher_small.gin", flags.FLAGS.teacher_steps),
            "student": ("student_small.gin", flags.FLAGS.student_steps)}
    results: dict = {}
    for role, (recipe, steps) in plan.items():
        model_dir = runs / role
        metrics = train_and_evaluate([str(REPO_GIN / recipe)], [data, f"train.steps = {steps}"],
                                     model_dir)
        detector = eval_lib.load_trained(model_dir)
        image = np.zeros([detector.image_size, detector.image_size, 3], np.uint8)
        keras_form = {"size_mb": (model_dir / train_lib.DETECTOR_WEIGHTS).stat().st_size / 2**20,
                      "latency_ms": latency_ms(detector), **metrics}
        results[role] = {"recipe": recipe, "steps": steps, "keras": keras_form,
                         **_exported_forms(model_dir, image)}
    student, teacher = results["student"], results["teacher"]
    int8_loss = student["tflite_float32"]["AP"] - student["tflite_int8"]["AP"]
    int8_speedup = student["keras"]["latency_ms"] / student["tflite_int8"]["latency_ms"]
    student_speedup = _speedups(teacher, student)
    results["checks"] = {
        "student_int8_AP_loss_points": 100 * int8_loss,
        "student_int8_speedup_vs_keras_float32": int8_speedup,
        # Teacher / student latency per form. At batch 1 on a CPU, TensorFlow's per-op dispatch
        # puts a floor of several ms under any Keras model, however small, so the target is
        # judged on the network as deployed (TFLite float32, interpreter alone).
        "student_speedup_vs_teacher": student_speedup,
        "targets": {"int8_AP_loss_points_max": 1.0, "int8_speedup_min": 2.0,
                    "student_speedup_min (tflite_float32 network)": 4.0},
        "meets_targets": 100 * int8_loss <= 1.0 and int8_speedup >= 2.0
        and student_speedup["tflite_float32 network"] >= 4.0,
    }
    return results


def _speedups(teacher: dict, student: dict) -> dict[str, float]:
    """Teacher latency / student latency for each exported form (and each interpreter alone)."""
    forms = [name for name, value in teacher.items() if isinstance(value, dict)
             and "latency_ms" in value]
    ratios = {form: teacher[form]["latency_ms"] / student[form]["latency_ms"] for form in forms}
    ratios |= {f"{form} network": teacher[form]["network_ms"] / student[form]["network_ms"]
               for form in forms if "network_ms" in teacher[form]}
    return ratios


BENCHMARKS: dict[str, Callable[[], dict]] = {"data": benchmark_data,
                                             "detector": benchmark_detector,
                                             "distill": benchmark_distill,
                                             "ocr": benchmark_ocr,
                                             "export": benchmark_export}


def _machine() -> dict:
    import tensorflow as tf

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def main(argv: list[str]) -> None:
    names = argv[1:]
    unknown = [n for n in names if n not in BENCHMARKS]
    if not names or unknown:
        raise config.ConfigError(f"Name a benchmark: {', '.join(BENCHMARKS)} "
                                 f"(got {' '.join(argv[1:]) or 'none'}).")
    config.parse_flags_gin()
    for name in names:
        results = {"benchmark": name, "machine": _machine(), **BENCHMARKS[name]()}
        output = _output_path(name)
        from kdod.train_lib import write_json

        write_json(output, results)
        print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
        print(f"Wrote {output}")


if __name__ == "__main__":
    config.run(main)
