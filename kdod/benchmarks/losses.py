"""losses: every distillation loss alone, KL + PKD, and the best pair, over seeds, on the real
car_plates split and on synthetic plates; AP gain over the student alone against the
training-time overhead.

    python -m kdod.benchmark losses [--seeds 3] [--teacher_steps 1000 --student_steps 600]
    python -m kdod.benchmark losses --recorded_only  # the tables so far, nothing trained

Each loss is its gin/losses/ file added to the data set's student recipe: on real plates the
gin/real/ teacher and student with their own schedules (the same runs as `kdod.benchmark real`,
in the same folders), on synthetic plates teacher_small and student_small with the steps given.
Every seed's students distill from seed 0's teacher; `ld` from a second teacher with the
distribution box head (gin/distribution_head.gin) it needs, and the student alone with that
head runs too, as its control (the tables' "gain over the head's control"). Once every loss has
run on a data set, the two best losses of that data set (mean AP over the seeds) run together,
each at its own weight. Runs are recorded as they finish (kdod/benchmarks/study.py): run the
command again to go on (`--recorded_only` writes the tables and the plot of the runs recorded
so far, training none); the real runs that `kdod.benchmark real` recorded (benchmarks/real.json,
the shipped teacher's too) are taken from there. Writes benchmarks/losses.json, the tables to
benchmarks/losses.md and the plot to benchmarks/losses.png.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path

from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions
from kdod.benchmarks.study import (
    Ledger,
    Run,
    check_selection,
    markdown_table,
    measure_all,
    parsed_losses,
    per_model,
)

LOSS_FILES = {"kl_logits": "losses/kl.gin", "PKD": "losses/pkd.gin", "cwd": "losses/cwd.gin",
              "fgd": "losses/fgd.gin", "mgd": "losses/mgd.gin", "dist": "losses/dist.gin",
              "ld": "losses/ld.gin"}
NEW_LOSSES = ("cwd", "fgd", "mgd", "dist", "ld")  # The modern losses, against the baseline.


@dataclasses.dataclass(frozen=True)
class Head:
    """A box head a loss needs in both models (`gin_file` adds it): the loss's teacher (a second
    one, trained once like the first, in teacher_<suffix>/) has it, and so does a control, the
    student alone with it (student_<suffix>/), that tells the loss's gain from the head's."""

    gin_file: str
    name: str
    suffix: str

    @property
    def teacher(self) -> str:
        return f"teacher ({self.name})"

    @property
    def control(self) -> str:
        return f"student alone ({self.name})"


# ld distills box-side distributions: teacher and student need the distribution head.
HEADS = {"ld": Head("distribution_head.gin", "distribution head", "ld")}
TEACHERS = ("teacher", *(head.teacher for head in HEADS.values()))
BASELINE = ("KL + PKD", "losses/kl_pkd.gin")
PLANNED_LOSS_FILES = {**LOSS_FILES, BASELINE[0]: BASELINE[1]}  # Each run on every seed.
METRICS = ("AP", "AP50", "AP_small", "train_minutes")


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A data set of the study: its teacher and student recipes and the runs' folder."""

    name: str
    teacher: str
    student: str
    folder: str
    set_steps: bool  # Whether --teacher_steps/--student_steps apply (else the recipes' own).

    def bindings(self, options: BenchmarkOptions, seed: int, steps: int) -> tuple[str, ...]:
        extra = (options.data_binding, f"train.steps = {steps}") if self.set_steps else ()
        return (f"train.seed = {seed}", *extra, *options.bindings)


DATA_SETS = (DataSet("real", "real/teacher.gin", "real/student.gin", "real", set_steps=False),
             DataSet("synthetic", "teacher_small.gin", "student_small.gin", "losses_synthetic",
                     set_steps=True))


def seed_plan(data: DataSet, options: BenchmarkOptions, seed: int,
              loss_files: Mapping[str, str]) -> list[Run]:
    """The student alone, then a distilled student per loss file, for one seed; every seed's
    students distill from seed 0's teachers, trained first in seed 0's plan (as in `real`)."""
    runs = seed_dir(data, options, seed)
    student = data.bindings(options, seed, options.student_steps)
    teachers = {name: teacher_run(data, options, HEADS.get(name)) for name in loss_files}
    first_use = list({teacher.model_dir: teacher for teacher in teachers.values()}.values())
    controls = [Run(head.control, (data.student, head.gin_file), runs / f"student_{head.suffix}",
                    student) for loss, head in HEADS.items() if loss in loss_files]
    return [*(first_use if seed == 0 else []),
            Run("student alone", (data.student,), runs / "student", student),
            *[Run(name, (data.student, loss_file), runs / Path(loss_file).stem, student,
                  teacher=teachers[name]) for name, loss_file in loss_files.items()],
            *controls]


def seed_dir(data: DataSet, options: BenchmarkOptions, seed: int) -> Path:
    """The folder of one seed's runs of `data`."""
    return options.runs_dir / data.folder / f"seed{seed}"


def teacher_run(data: DataSet, options: BenchmarkOptions, head: Head | None = None) -> Run:
    """The (seed 0) teacher of `data` that students distill from, with `head` if given."""
    model, extra, folder = "teacher", (), "teacher"
    if head is not None:
        model, extra, folder = head.teacher, (head.gin_file,), f"teacher_{head.suffix}"
    return Run(model, (data.teacher, *extra), seed_dir(data, options, 0) / folder,
               data.bindings(options, 0, options.teacher_steps))


def best_pair(models: Mapping[str, dict]) -> tuple[str, str]:
    """The two single losses of highest mean AP."""
    singles = sorted((name for name in LOSS_FILES if name in models),
                     key=lambda name: models[name]["AP"]["mean"], reverse=True)
    return singles[0], singles[1]


def pair_run(plan: list[Run], first: str, second: str) -> Run:
    """The distilled run of `plan`'s seed with both losses, each at its own weight."""
    student = next(run for run in plan if run.model == "student alone")
    # A loss that needs its own teacher (ld) takes it; the other loss works with any teacher.
    owner = next((name for name in (first, second) if name in HEADS), first)
    teacher = next(run.teacher for run in plan if run.model == owner)
    files = (LOSS_FILES[first], LOSS_FILES[second])
    weights = parsed_losses(files[0]) | parsed_losses(files[1])
    return Run(f"{first} + {second}", (*student.gin_files, *files),
               student.model_dir.with_name("_".join(Path(name).stem for name in files)),
               (*student.bindings, f"DistillerConfig.losses = {weights!r}"),
               teacher=teacher)


def control_of(model: str) -> str | None:
    """The control of a loss (or pair) that needs a head: the student alone with that head."""
    return next((HEADS[loss].control for loss in model.split(" + ") if loss in HEADS), None)


def summary(measured: Mapping[str, list[dict]]) -> dict:
    """Per model: metrics, AP gain over the student alone (points), training-time overhead
    (none without a recorded student alone); a loss that needs a head, its AP gain over the
    student alone with that head too (once that control is recorded)."""
    models = per_model(measured, METRICS)
    alone = models.get("student alone")
    for values in models.values() if alone else ():
        values["gain_AP_points"] = 100 * (values["AP"]["mean"] - alone["AP"]["mean"])
        values["time_overhead"] = (values["train_minutes"]["mean"]
                                   / alone["train_minutes"]["mean"])
    for name, values in models.items():
        if (control := models.get(control_of(name))) is not None:
            values["gain_over_control_AP_points"] = 100 * (values["AP"]["mean"]
                                                           - control["AP"]["mean"])
    baseline = models.get(BASELINE[0], {}).get("AP", {}).get("mean")
    versus = {name: 100 * (models[name]["AP"]["mean"] - baseline)
              for name in NEW_LOSSES if name in models and baseline is not None}
    return {"models": models, "new_vs_kl_pkd_AP_points": versus,
            "new_losses_beating_kl_pkd": sum(points > 0 for points in versus.values())}


def run_data_set(data: DataSet, options: BenchmarkOptions, ledger: Ledger) -> dict:
    """Every loss and the baseline over the seeds, then the best pair over the seeds; of the
    models `options` does not train (`recorded_only`, `only`), the runs recorded so far; and
    how many are left to run."""
    plans = [seed_plan(data, options, seed, PLANNED_LOSS_FILES) for seed in range(options.seeds)]
    singles = [run for plan in plans for run in plan]
    pairs = [f"{first} + {second}" for first, second in itertools.permutations(LOSS_FILES, 2)]
    check_selection(options.only, [*(run.model for run in singles), *pairs])  # Pairs: any order.
    measured = measure_all(singles, ledger, strategy=options.strategy, train=options.trains)
    if sum(name in measured for name in LOSS_FILES) >= 2:
        first, second = best_pair(per_model(measured, METRICS))
        measured |= measure_all([pair_run(plan, first, second) for plan in plans], ledger,
                                strategy=options.strategy, train=options.trains)
    pair_runs = len(plans)  # One per seed.
    runs_left = len(singles) + pair_runs - sum(len(runs) for runs in measured.values())
    return {**summary(measured), "runs_left": runs_left}


def plot(results: dict, path: Path) -> None:
    """AP gain (points, mean +- std over seeds) against training time / the student's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, all_axes = plt.subplots(1, len(DATA_SETS), figsize=(11, 4), squeeze=False)
    for axes, data in zip(all_axes[0], DATA_SETS):
        models = {name: values for name, values in results[data.name]["models"].items()
                  if name not in (*TEACHERS, "student alone") and "gain_AP_points" in values}
        for name, values in models.items():
            axes.errorbar(values["time_overhead"], values["gain_AP_points"],
                          yerr=100 * values["AP"]["std"], fmt="o", capsize=3)
            axes.annotate(name, (values["time_overhead"], values["gain_AP_points"]),
                          textcoords="offset points", xytext=(4, 4), fontsize=8)
        axes.axhline(0, color="grey", lw=0.8)
        left = results[data.name]["runs_left"]
        axes.set_title(f"{data.name} ({results['seeds']} seeds"
                       + (f", {left} runs still to run)" if left else ")"))
        axes.set_xlabel("training time / student alone's")
        axes.set_ylabel("AP gain over the student alone (points)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def tables(results: dict) -> str:
    """The README's tables, one per data set."""
    columns = {"runs": "runs", "AP": "AP", "AP50": "AP50", "AP_small": "AP_small",
               "gain_AP_points": "AP gain (points)",
               "gain_over_control_AP_points": "gain over the head's control",
               "time_overhead": "time / student's"}
    return "\n".join(f"{data.name}:\n\n" + markdown_table(results[data.name]["models"], columns)
                     for data in DATA_SETS)


def run(options: BenchmarkOptions) -> dict:
    output = options.output_path("losses")
    ledger = Ledger(output, METRICS, shared=[output.with_name("real.json")])
    results = {"seeds": options.seeds, "loss_files": PLANNED_LOSS_FILES,
               **{data.name: run_data_set(data, options, ledger) for data in DATA_SETS}}
    results |= targets.check("losses", results["real"])
    results["partial"] = any(results[data.name]["runs_left"] for data in DATA_SETS)
    if not options.chief:
        return results
    plot(results, output.with_suffix(".png"))
    output.with_suffix(".md").write_text(tables(results))
    return {**results, "runs": ledger.runs}
