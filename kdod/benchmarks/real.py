"""real: teacher, student alone and distilled students on the real car_plates split.

    python -m kdod.benchmark real [--seeds 3]
    python -m kdod.benchmark real --gin_param="REAL_TEST = ('number_plates', 'test', 1.0)" \
        --output=benchmarks/real_number_plates.json       # the same models on another set

Training: the 346 real images (records), test: the 87 of the Kaggle-layout sample
(gin/data/car_plates_real.gin). Every model is trained by its gin/real/ recipe, with the
recipe's own schedule (the student budget is part of the recipe), for each seed; COCO AP, AP50
and AP_small on the test images, and wall minutes of student training on this machine. The
best distilled recipe's seed-0 student is exported to TFLite and timed end to end (letterbox,
network, decoding, NMS) on a real test image, batch 1, 2 threads. Results are written after
each seed (marked partial); run again, a stopped benchmark resumes its unfinished runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdod import eval_lib, export_lib, exported
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, mean_std, recipe
from kdod.experiment import train_and_evaluate
from kdod.files import write_json
from kdod.timing import seconds_per_call

TEACHER = ("teacher", "real/teacher.gin")
STUDENT = ("student alone", "real/student.gin")
DISTILLED = {"kl_logits": "real/kl.gin", "feature_imitation (PKD)": "real/feature.gin",
             "combined (KL + PKD)": "real/combined.gin"}
METRICS = ("AP", "AP50", "AP_small", "train_minutes")
QUANTIZATIONS = ("float32", "int8")


def seed_plan(options: BenchmarkOptions, seed: int) -> list[tuple[str, str, Path, list[str]]]:
    """(model, recipe, model_dir, bindings) of each run of one seed; the teacher comes first."""
    runs = options.runs_dir / "real" / f"seed{seed}"
    common = [f"train.seed = {seed}", *options.bindings]
    teacher_dir = runs / "teacher"
    plan = [(*TEACHER, teacher_dir, common), (*STUDENT, runs / "student", common)]
    plan += [(name, gin_file, runs / Path(gin_file).stem,
              [*common, f"DistillerConfig.teacher_dir = '{teacher_dir}'"])
             for name, gin_file in DISTILLED.items()]
    return plan


def summary(measured: dict[str, list[dict]]) -> dict:
    """Mean +- std of every metric per model; the best distilled recipe and its gain."""
    per_model = {name: {metric: mean_std([run[metric] for run in runs]) for metric in METRICS}
                 for name, runs in measured.items()}
    ran = [name for name in DISTILLED if name in per_model]
    best = max(ran, key=lambda name: per_model[name]["AP"]["mean"])
    alone = per_model[STUDENT[0]]
    results = {"seeds": len(measured[TEACHER[0]]), "recipes": dict([TEACHER, STUDENT]) | DISTILLED,
               "models": per_model, "best_recipe": best,
               "best_AP": per_model[best]["AP"]["mean"],
               "best_AP50": per_model[best]["AP50"]["mean"],
               "best_gain_AP_points": 100 * (per_model[best]["AP"]["mean"] - alone["AP"]["mean"]),
               "best_train_minutes": per_model[best]["train_minutes"]["mean"]}
    return {**results, **targets.check("real", results)}


def exported_latency(model_dir: Path, image: np.ndarray) -> dict[str, dict[str, float]]:
    """End-to-end and network-alone batch-1 ms of the run's TFLite exports on `image`."""
    detector = eval_lib.load_trained(model_dir)
    return {quantize: _tflite_latency(export_lib.export(detector, model_dir / "export", "tflite",
                                                        quantize, model_dir=model_dir), image)
            for quantize in QUANTIZATIONS}


def _tflite_latency(path: Path, image: np.ndarray) -> dict[str, float]:
    loaded = exported.load_exported(path, num_threads=2)
    square = np.zeros([1, loaded.image_size, loaded.image_size, 3], np.uint8)
    return {"ms": 1000 * seconds_per_call(lambda: loaded.detect_image(image), 30),
            "network_ms": 1000 * seconds_per_call(lambda: loaded.network(square), 50)}


def _first_test_image() -> np.ndarray:
    return next(eval_lib.original_eval_examples().as_numpy_iterator())["image"]


def plot(results: dict, path: Path) -> None:
    """AP (mean +- std over seeds) of every model, the targets drawn in."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    means = [results["models"][n]["AP"]["mean"] for n in names]
    stds = [results["models"][n]["AP"]["std"] for n in names]
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.barh(names, means, xerr=stds, color="#4c72b0")
    axes.axvline(targets.threshold("real", "distilled_AP_min"), color="#c44e52", ls="--",
                 label="target (distilled)")
    axes.set_xlabel(f"COCO AP on the 87 real test images ({results['seeds']} seeds)")
    axes.invert_yaxis()
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run(options: BenchmarkOptions) -> dict:
    measured: dict[str, list[dict]] = {}
    output = options.output_path("real")
    for seed in range(options.seeds):
        for name, gin_file, model_dir, bindings in seed_plan(options, seed):
            metrics = train_and_evaluate([recipe(gin_file)], bindings, model_dir, split=None)
            measured.setdefault(name, []).append({metric: metrics[metric] for metric in METRICS})
        write_json(output, {"benchmark": "real", "partial": True, **summary(measured)})
    results = summary(measured)
    run_dirs = {name: model_dir for name, _, model_dir, _ in seed_plan(options, 0)}
    latency = exported_latency(run_dirs[results["best_recipe"]], _first_test_image())
    latency_ms = min(form["ms"] for form in latency.values())
    results = {**results, "exported_student_latency": latency,
               "best_exported_latency_ms": latency_ms}
    results = {**results, **targets.check("real", results)}
    plot(results, output.with_suffix(".png"))
    return results
