"""real: teacher, student alone, distilled students and augmentation variants on the real
car_plates split.

    python -m kdod.benchmark real [--seeds 3]
    python -m kdod.benchmark real --gin_param="REAL_TEST = ('number_plates', 'test', 1.0)" \
        --output=benchmarks/real_number_plates.json       # the same models on another set
    python -m kdod.benchmark real --only='*mosaic*'       # train those; the rest as recorded

Training: the 346 real images (records), test: the 87 of the Kaggle-layout sample
(gin/data/car_plates_real.gin). Every model is trained by its gin/real/ recipe, with the
recipe's own schedule (the student budget is part of the recipe), for each seed; COCO AP, AP50
and AP_small on the test images, and wall minutes of student training on this machine. PKD also
trains from a teacher cache (the teacher run once over the seed's augmented examples before
the student trains; those minutes are reported as the teacher's, apart from the student's),
on its 900 steps and on the 1500 of gin/real/long.gin that the cached student's minutes allow,
beside the student alone on those 1500 (each distilled recipe's gain is over the student
alone on its schedule); on the 1500 steps also with the distribution box head and with mosaics
(gin/real/mosaic.gin) and with the mosaics closed for the last 300 steps
(gin/real/close_mosaic.gin), each the student alone and PKD from the cache.
The student alone also trains with each augmentation variant (gin/real/augment_*.gin), to measure
which of camera degradations and tilts help on real photographs. The best distilled recipe's
seed-0 student is exported to TFLite and timed end to end (letterbox, network, decoding, NMS)
on a real test image, batch 1, 2 threads. Every run's metrics are recorded in the results file
as it finishes (kdod/benchmarks/study.py): run the command again and a stopped benchmark goes
on with the runs not recorded yet, also from a fresh clone.
The table goes to benchmarks/real.md (for the README), the plot to benchmarks/real.png; with
`--only` they hold the recorded runs (a runs column counts each model's seeds), marked partial.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from absl import logging

from kdod import eval_lib, export_lib, exported
from kdod.benchmarks import losses, targets
from kdod.benchmarks.common import BenchmarkOptions
from kdod.benchmarks.study import (
    Ledger,
    Run,
    check_selection,
    markdown_table,
    measure_all,
    per_model,
    trained_dir,
)
from kdod.timing import seconds_per_call

TEACHER = ("teacher", "real/teacher.gin")
STUDENT = ("student alone", "real/student.gin")
# Loss files (gin/losses/, or gin/real/ with the student's schedule changed) added to the
# student's recipe. The best recipe so far first (PKD, seed 0): a sitting stopped early has
# measured it; then PKD in the 20 student minutes (fewer steps).
DISTILLED = {"feature_imitation (PKD)": "losses/pkd.gin",
             "feature_imitation (PKD), 600 steps": "real/pkd_20min.gin",
             "combined (KL + PKD)": "losses/kl_pkd.gin", "kl_logits": "losses/kl.gin"}
# Distilled recipes trained from a teacher cache (kdod.cache_teacher) instead of the teacher's
# forward pass at every step, made first on the seed's augmented examples: its minutes count
# as the teacher's. PKD's 900 steps as online (the same run but for the cache), the longer
# schedule of gin/real/long.gin that the student's minutes then allow, and that schedule with
# mosaics (made with the cache, so they cost the student nothing; the best on seed 0), with
# them closed for the last steps (YOLOv8's close_mosaic),
# and that schedule with the distribution box head (in the loss study the student alone with it
# was level with ld and above every other loss over two seeds), distilled from the teacher with
# the head: {name: (recipe, the teacher's head)}.
DISTRIBUTION_HEAD = losses.HEADS["ld"]
CACHED = {"feature_imitation (PKD), teacher cache": ("losses/pkd.gin", None),
          "feature_imitation (PKD), 1500 steps, teacher cache": ("real/pkd_long.gin", None),
          "feature_imitation (PKD), 1500 steps, mosaic, teacher cache":
              ("real/pkd_long_mosaic.gin", None),
          "feature_imitation (PKD), 1500 steps, close_mosaic, teacher cache":
              ("real/pkd_long_close_mosaic.gin", None),
          "feature_imitation (PKD), 1500 steps, distribution head, teacher cache":
              ("real/pkd_long_head.gin", DISTRIBUTION_HEAD)}
# Students alone on other schedules or heads, each the baseline of the distilled recipes on
# them: {name: gin files added to the student's}.
OTHER_STUDENTS = {"student alone, 1500 steps": ("real/long.gin",),
                  "student alone, 1500 steps, distribution head":
                      ("real/long.gin", DISTRIBUTION_HEAD.gin_file),
                  "student alone, 1500 steps, mosaic": ("real/long.gin", "real/mosaic.gin"),
                  "student alone, 1500 steps, close_mosaic":
                      ("real/long.gin", "real/close_mosaic.gin")}
BASELINES = {"feature_imitation (PKD), 1500 steps, teacher cache": "student alone, 1500 steps",
             "feature_imitation (PKD), 1500 steps, distribution head, teacher cache":
                 "student alone, 1500 steps, distribution head",
             "feature_imitation (PKD), 1500 steps, mosaic, teacher cache":
                 "student alone, 1500 steps, mosaic",
             "feature_imitation (PKD), 1500 steps, close_mosaic, teacher cache":
                 "student alone, 1500 steps, close_mosaic"}

# Augmentation variants of the student alone (gin/real/), each against real/student.gin's default
# augmentation (scale jitter, crops keeping plates, flips, colour).
AUGMENTED = {"student, camera (blur, JPEG)": "real/augment_camera.gin",
             "student, tilt (rotation, perspective)": "real/augment_tilt.gin",
             "student, camera + tilt": "real/augment_photo.gin"}
METRICS = ("AP", "AP50", "AP_small", "train_minutes", "teacher_cache_minutes")
QUANTIZATIONS = ("float32", "int8")


def seed_plan(options: BenchmarkOptions, seed: int,
              distilled: dict[str, str] = DISTILLED) -> list[Run]:
    """The runs of one seed: the student alone and each distilled student, all distilled from
    the one teacher (seed 0's run, trained first in seed 0's plan): the loss study's real plan
    (`losses.seed_plan`), whose runs these are; the students alone on the other schedules and
    heads; the CACHED recipes (from the teacher with their head); then the student with each
    augmentation variant."""
    data = losses.DATA_SETS[0]
    plan = losses.seed_plan(data, options, seed, distilled)
    student = next(run for run in plan if run.model == STUDENT[0])
    others = [Run(name, (*student.gin_files, *files), student.model_dir.with_name(
        "_".join([student.model_dir.name, *(Path(file).stem for file in files)])),
        student.bindings) for name, files in OTHER_STUDENTS.items()]
    cached = [_cached_run(name, loss_file, student, losses.teacher_run(data, options, head))
              for name, (loss_file, head) in CACHED.items()]
    return plan + [*others, *cached] + [
        Run(name, (gin_file,), student.model_dir.with_name(Path(gin_file).stem),
            student.bindings) for name, gin_file in AUGMENTED.items()]


def _cached_run(name: str, loss_file: str, student: Run, teacher: Run) -> Run:
    """The student distilled with `loss_file` from a teacher cache made for the run first."""
    folder = Path(loss_file).stem
    return Run(name, (*student.gin_files, loss_file),
               student.model_dir.with_name(f"{folder}_cached"), student.bindings,
               teacher=teacher, teacher_cache=student.model_dir.with_name(f"{folder}_cache"))


def summary(measured: dict[str, list[dict]]) -> dict:
    """Mean +- std of every metric per model, each distilled one's AP gain over the student
    alone on its schedule (BASELINES); the best distilled recipe and its gain.

    The best recipe is the one of highest mean AP among those that trained within the student
    budget (targets: student_train_minutes_max), or among all if none did."""
    models = per_model(measured, METRICS)
    ran = [name for name in (*DISTILLED, *CACHED) if name in models]
    for name in ran:
        baseline = models.get(BASELINES.get(name, STUDENT[0]))
        if baseline:
            models[name]["gain_AP_points"] = 100 * (models[name]["AP"]["mean"]
                                                    - baseline["AP"]["mean"])
    recipes = (dict([TEACHER, STUDENT]) | DISTILLED | AUGMENTED
               | {name: " + ".join([STUDENT[1], *files]) for name, files in OTHER_STUDENTS.items()}
               | {name: f"{loss_file} + teacher cache" for name, (loss_file, _) in CACHED.items()})
    results = {"seeds": len(measured.get(STUDENT[0], ())), "recipes": recipes, "models": models}
    if not ran:  # Only with --only: no distilled recipe trained or recorded yet.
        return {**results, "best_recipe": None}
    budget = targets.threshold("real", "student_train_minutes_max")
    within = [name for name in ran if models[name]["train_minutes"]["mean"] <= budget]
    best = max(within or ran, key=lambda name: models[name]["AP"]["mean"])
    results |= {"best_recipe": best, "best_AP": models[best]["AP"]["mean"],
                "best_AP50": models[best]["AP50"]["mean"],
                "best_gain_AP_points": models[best].get("gain_AP_points"),
                "best_train_minutes": models[best]["train_minutes"]["mean"]}
    return {**results, **targets.check("real", results)}


def table(results: dict) -> str:
    """The README's table of the benchmark."""
    return markdown_table(results["models"], {"runs": "runs", "AP": "AP", "AP50": "AP50",
                                              "AP_small": "AP_small",
                                              "gain_AP_points": "AP gain (points)",
                                              "train_minutes": "train min",
                                              "teacher_cache_minutes": "teacher cache min"},
                          recipes=results["recipes"])


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
    output = options.output_path("real")
    # The loss study's runs are shared: the distribution-head teacher is trained (shipped) there.
    ledger = Ledger(output, METRICS, shared=[output.with_name("losses.json")])
    plan = [run for seed in range(options.seeds) for run in seed_plan(options, seed)]
    check_selection(options.only, [run.model for run in plan])
    measured = measure_all(plan, ledger, strategy=options.strategy, train=options.trains)
    runs_left = len(plan) - sum(len(runs) for runs in measured.values())  # Left out by --only.
    results = {**summary(measured), "partial": runs_left > 0, "runs_left": runs_left}
    best_run = next((run for run in seed_plan(options, 0) if run.model == results["best_recipe"]),
                    None)
    if best_run is not None and (options.trains(best_run.model) or best_run.trained()):
        best_dir = trained_dir(best_run, ledger, options.strategy)
        if options.chief:  # The chief measures its machine's latency and writes the files.
            latency = exported_latency(best_dir, _first_test_image())
            results |= {"exported_student_latency": latency,
                        "best_exported_latency_ms": min(form["ms"] for form in latency.values())}
            results |= targets.check("real", results)
    else:
        logging.warning("Not timing the export: --only leaves %s untrained.",
                        f"the best recipe's seed-0 run ({best_run.model}), not on this machine,"
                        if best_run else "every distilled recipe")
    if not options.chief:
        return results
    plot(results, output.with_suffix(".png"))
    output.with_suffix(".md").write_text(table(results))
    return {**results, "runs": ledger.runs}
