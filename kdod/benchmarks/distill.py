"""distill: teacher, student alone and each distillation recipe over seeds; the step cost.

    python -m kdod.benchmark distill [--seeds 3 --teacher_steps 1000 --student_steps 600]
"""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from kdod import train_lib, train_step
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, mean_std, parse_recipe, random_batch, recipe
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import DistillerConfig, build_distiller
from kdod.experiment import train_and_evaluate
from kdod.files import write_json
from kdod.timing import seconds_per_call

RECIPES = {"kl_logits": "kl_ssd.gin", "feature_imitation": "feature_ssd.gin",
           "box (bounded + imitation)": "box_ssd.gin", "combined": "combined_ssd.gin"}


def _teacher_binding(teacher_dir: Path) -> str:
    return f"DistillerConfig.teacher_dir = '{teacher_dir}'"


def seed_plan(options: BenchmarkOptions, seed: int) -> list[tuple[str, str, Path, list[str]]]:
    """(model, recipe, model_dir, bindings) of each run of one seed; the teacher comes first."""
    runs = options.runs_dir / "distill" / f"seed{seed}"
    common = [options.data_binding, f"train.seed = {seed}"]
    steps = f"train.steps = {options.student_steps}"
    plan = [("teacher", "teacher_small.gin", runs / "teacher",
             [f"train.steps = {options.teacher_steps}"]),
            ("student alone", "student_small.gin", runs / "student", [steps])]
    plan += [(name, gin_file, runs / gin_file.removesuffix(".gin"),
              [steps, _teacher_binding(runs / "teacher")])
             for name, gin_file in RECIPES.items()]
    return [(name, gin_file, model_dir, common + bindings)
            for name, gin_file, model_dir, bindings in plan]


def summary(ap: dict[str, list[float]]) -> dict:
    """Mean +- std AP per model, and the best recipe's gain and share of the gap recovered."""
    per_model = {name: mean_std(values) for name, values in ap.items()}
    student, teacher = per_model["student alone"]["mean"], per_model["teacher"]["mean"]
    best = max(RECIPES, key=lambda name: per_model[name]["mean"])
    gain = per_model[best]["mean"] - student
    recovered = gain / (teacher - student) if teacher > student else float("nan")
    results = {"seeds": len(ap["teacher"]), "recipes": RECIPES, "AP": per_model,
               "best_recipe": best, "best_gain_AP_points": 100 * gain,
               "gap_recovered": recovered}
    return {**results, **targets.check("distill", results)}


def step_time(teacher_dir: Path, batch_size: int = 16) -> dict:
    """Distillation step time / (student step + teacher forward), same batch, same process."""
    parse_recipe(recipe("combined_ssd.gin"), _teacher_binding(teacher_dir))
    distiller = build_distiller(DistillerConfig())  # As gin's recipe configures it.
    student = Detector(DetectorConfig())
    for model in (distiller, student):
        model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
    batch = random_batch(student.image_size, batch_size)
    distill_s = seconds_per_call(tf.function(lambda: train_step.train_batch(distiller, batch)), 10)
    student_s = seconds_per_call(tf.function(lambda: train_step.train_batch(student, batch)), 10)
    teacher = distiller.teacher
    teacher_s = seconds_per_call(tf.function(lambda: teacher(batch["image"], training=False)), 10)
    results = {"distill_step_s": distill_s, "student_step_s": student_s,
               "teacher_forward_s": teacher_s, "ratio": distill_s / (student_s + teacher_s)}
    return {**results, **targets.check("distill_step_time", results)}


def run(options: BenchmarkOptions) -> dict:
    """COCO AP mean +- std over seeds of every model, then the step-time ratio.

    Writes the results so far after each seed (marked partial), so a long run that is
    stopped keeps what it measured; run again, it resumes the unfinished runs.
    """
    steps = {"teacher": options.teacher_steps, "students": options.student_steps}
    ap: dict[str, list[float]] = {}
    for seed in range(options.seeds):
        for name, gin_file, model_dir, bindings in seed_plan(options, seed):
            metrics = train_and_evaluate([recipe(gin_file)], bindings, model_dir,
                                         strategy=options.strategy)
            ap.setdefault(name, []).append(metrics["AP"])
        write_json(options.output_path("distill"),
                   {"benchmark": "distill", "partial": True, "steps": steps, **summary(ap)})
    results = summary(ap)
    timing = step_time(options.runs_dir / "distill" / "seed0" / "teacher")
    return {"steps": steps, **results, "step_time": timing,
            "meets_targets": results["meets_targets"]
            and targets.met("distill_step_time", timing)}
