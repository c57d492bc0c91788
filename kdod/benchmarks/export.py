"""export: file size, batch-1 latency and COCO AP of the Keras, SavedModel and TFLite forms.

    python -m kdod.benchmark export [--teacher_steps 1000 --student_steps 600]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from kdod import checkpoints, eval_lib, export_lib, exported
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, recipe
from kdod.experiment import latency_ms, train_and_evaluate
from kdod.timing import seconds_per_call


def exported_forms(model_dir: Path, image: np.ndarray) -> dict:
    """Exports the run in every form and measures each (see `measure_export`)."""
    detector = eval_lib.load_trained(model_dir)
    export_dir = model_dir / "export"
    forms = {"saved_model": export_lib.export(detector, export_dir, "saved_model",
                                              model_dir=model_dir)}
    for quantize in ("float32", "float16", "int8"):
        forms[f"tflite_{quantize}"] = export_lib.export(detector, export_dir, "tflite", quantize,
                                                        model_dir=model_dir)
    return {name: measure_export(path, image) for name, path in forms.items()}


def measure_export(path: Path, image: np.ndarray) -> dict:
    """Size (MB), batch-1 latency (ms) on `image` and COCO metrics on test of one export."""
    loaded = exported.load_exported(path, num_threads=2)
    files = [path, *path.rglob("*")] if path.is_dir() else [path]
    results = {"size_mb": sum(p.stat().st_size for p in files if p.is_file()) / 2**20,
               "latency_ms": 1000 * seconds_per_call(lambda: loaded.detect_image(image), 30),
               **eval_lib.evaluate_exported(path, split="test")}
    if isinstance(loaded, exported.TfliteDetector):  # The interpreter alone, without NMS.
        results["network_ms"] = 1000 * seconds_per_call(lambda: loaded.network(image[None]), 50)
    return results


def speedups(teacher: dict, student: dict) -> dict[str, float]:
    """Teacher latency / student latency for each exported form (and each interpreter alone)."""
    forms = [name for name, value in teacher.items() if isinstance(value, dict)
             and "latency_ms" in value]
    ratios = {form: teacher[form]["latency_ms"] / student[form]["latency_ms"] for form in forms}
    ratios |= {f"{form} network": teacher[form]["network_ms"] / student[form]["network_ms"]
               for form in forms if "network_ms" in teacher[form]}
    return ratios


def checks(teacher: dict, student: dict) -> dict:
    """The student's int8 AP loss and speed-up, its speed-up over the teacher, the targets."""
    int8_loss = student["tflite_float32"]["AP"] - student["tflite_int8"]["AP"]
    student_speedup = speedups(teacher, student)
    results = {
        "student_int8_AP_loss_points": 100 * int8_loss,
        "student_int8_speedup_vs_keras_float32":
            student["keras"]["latency_ms"] / student["tflite_int8"]["latency_ms"],
        "student_speedup_vs_teacher": student_speedup,
    }
    # At batch 1 on a CPU, TensorFlow's per-op dispatch puts a floor of several ms under any
    # Keras model, however small, so the student's speed-up target is judged on the network as
    # deployed (TFLite float32, interpreter alone).
    measured = {**results,
                "student_speedup_tflite_float32_network": student_speedup["tflite_float32 network"]}
    return {**results, **targets.check("export", measured)}


def run(options: BenchmarkOptions) -> dict:
    """Teacher and student in every form: file size, batch-1 latency (2 threads), COCO AP.

    Keras latency is `detect` (network, decoding, NMS) on a model-size image; exported
    latencies are `detect_image` on the same image (letterbox, network, decoding, NMS), and
    for TFLite also the interpreter alone (network_ms).
    """
    tf.config.threading.set_intra_op_parallelism_threads(2)
    plan = {"teacher": ("teacher_small.gin", options.teacher_steps),
            "student": ("student_small.gin", options.student_steps)}
    results: dict = {}
    for role, (gin_file, steps) in plan.items():
        model_dir = options.runs_dir / "export" / role
        metrics = train_and_evaluate([recipe(gin_file)],
                                     [options.data_binding, f"train.steps = {steps}"], model_dir,
                                     strategy=options.strategy)
        detector = eval_lib.load_trained(model_dir)
        image = np.zeros([detector.image_size, detector.image_size, 3], np.uint8)
        keras_form = {"size_mb": (model_dir / checkpoints.DETECTOR_WEIGHTS).stat().st_size / 2**20,
                      "latency_ms": latency_ms(detector), **metrics}
        results[role] = {"recipe": gin_file, "steps": steps, "keras": keras_form,
                         **exported_forms(model_dir, image)}
    results["checks"] = checks(results["teacher"], results["student"])
    return results
