"""Distillation studies: trained-and-evaluated runs of gin recipes, recorded as they finish.

A study (the `real` and `losses` benchmarks) trains teachers, students alone and distilled
students for each seed with `experiment.train_and_evaluate`, and keeps each run's metrics in
its results file under "runs", keyed by the run folder and fingerprinted by the run's whole gin
config. A run recorded with the same config is not trained again, even when its folder is gone
(a fresh clone, another machine), so a study of many CPU-hours goes on over several sittings:
run the same command again. A distilled run whose teacher's folder is gone trains that teacher
again first (same recipe and seed; its record is replaced by the new teacher's metrics).
A run's folder records the config it trains (`study_fingerprint`): a stopped run resumes, and a
folder left by an older config of the run is moved aside (`<name>.superseded-1`), not resumed.
A run distilled from a teacher cache makes the cache first (`kdod.cache_teacher_lib`, timed: its
minutes are the teacher's, recorded apart from the student's) and deletes it once the run is
recorded: a cache is gigabytes, and made again from the recipe when needed.

Under MultiWorkerMirroredStrategy every worker runs the same study (its runs are trained and
evaluated together) and keeps the same ledger in memory; only the chief writes the results
file, claims folders and makes and deletes caches, and the workers wait for those files at
barriers. The results file and the runs' folders must be on storage every worker sees.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import itertools
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import gin
from absl import logging

from kdod import checkpoints, config, distribute
from kdod.benchmarks.common import mean_std, parse_recipe, recipe
from kdod.files import write_json

if TYPE_CHECKING:
    import tensorflow as tf

FINGERPRINT_FILE = "study_fingerprint"  # in a run's folder: the config it was trained with


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of a study: `gin_files` (names in gin/) plus `bindings`, in
    `model_dir`; a distilled run names the `teacher` run it distills from, and with
    `teacher_cache` a folder for the cache of that teacher's outputs it trains from."""

    model: str
    gin_files: tuple[str, ...]
    model_dir: Path
    bindings: tuple[str, ...] = ()
    teacher: Run | None = None
    teacher_cache: Path | None = None

    def __post_init__(self):
        if self.teacher is not None:
            object.__setattr__(self, "bindings", (
                *self.bindings, f"DistillerConfig.teacher_dir = '{self.teacher.model_dir}'"))
        if self.teacher_cache is not None:
            object.__setattr__(self, "bindings", (
                *self.bindings, f"DistillerConfig.teacher_cache = '{self.teacher_cache}'"))

    def parse(self) -> None:
        """Replaces the gin config by this run's."""
        gin.clear_config()
        config.parse_gin([recipe(name) for name in self.gin_files], list(self.bindings))

    def trained(self) -> bool:
        """Whether its folder holds the trained detector's weights."""
        return (self.model_dir / checkpoints.DETECTOR_WEIGHTS).is_file()

    def fingerprint(self) -> str:
        """sha256 of the run's whole gin config (every binding of every included file)."""
        self.parse()
        return hashlib.sha256(gin.config_str().encode()).hexdigest()


def parsed_losses(gin_file: str) -> dict[str, float]:
    """`DistillerConfig.losses` as the loss file `gin_file` (in gin/) binds it."""
    parse_recipe(recipe(gin_file))
    return dict(gin.query_parameter("DistillerConfig.losses"))


class Ledger:
    """The recorded runs of a results file: {model_dir: {"fingerprint", "model", "metrics"}}.

    `shared`: results files of other studies whose runs this one shares (same folders): a run
    they recorded with the same config counts as recorded here too, and is copied in. A run
    shipped without its checkpoints (the real teacher) is found there, not trained again."""

    def __init__(self, results_path: Path, keep: Sequence[str], shared: Sequence[Path] = ()):
        self.results_path, self.keep = results_path, tuple(keep)
        self.runs: dict[str, dict] = _recorded_runs(results_path)
        self.shared = {key: entry for path in shared for key, entry in _recorded_runs(path).items()}

    def recorded(self, run: Run, fingerprint: str) -> dict | None:
        key = str(run.model_dir)
        own, shared = self.runs.get(key), self.shared.get(key)
        if own and own["fingerprint"] == fingerprint:
            return own["metrics"]
        if shared and shared["fingerprint"] == fingerprint:
            return self.record(run, fingerprint, shared["metrics"])  # Copied in.
        return None

    def record(self, run: Run, fingerprint: str, metrics: Mapping[str, float]) -> dict:
        kept = {name: metrics[name] for name in self.keep if name in metrics}
        self.runs[str(run.model_dir)] = {"model": run.model, "fingerprint": fingerprint,
                                         "metrics": kept}
        return kept

    def write(self, results: Mapping) -> None:
        """Writes `results` with the recorded runs (so far: marked partial)."""
        write_json(self.results_path, {**results, "runs": self.runs})


def _recorded_runs(results_path: Path) -> dict[str, dict]:
    return json.loads(results_path.read_text()).get("runs", {}) if results_path.is_file() else {}


def measure(run: Run, ledger: Ledger, strategy: tf.distribute.Strategy | None = None) -> dict:
    """The run's recorded metrics, or trains (resumes) and evaluates it (under `strategy`)
    and records them."""
    fingerprint = run.fingerprint()
    recorded = ledger.recorded(run, fingerprint)
    if recorded is not None:
        return recorded
    if run.teacher is not None:
        trained_dir(run.teacher, ledger, strategy)
    return _train_and_record(run, ledger, fingerprint, strategy)


def trained_dir(run: Run, ledger: Ledger, strategy: tf.distribute.Strategy | None = None) -> Path:
    """The run's folder, trained to its end: trained (again, metrics recorded anew) first when
    it is not recorded or its folder is gone."""
    fingerprint = run.fingerprint()
    if not run.trained() or ledger.recorded(run, fingerprint) is None:
        if run.teacher is not None:
            trained_dir(run.teacher, ledger, strategy)
        _train_and_record(run, ledger, fingerprint, strategy)
    return run.model_dir


def _train_and_record(run: Run, ledger: Ledger, fingerprint: str,
                      strategy: tf.distribute.Strategy | None) -> dict:
    from kdod.experiment import train_and_evaluate

    chief = distribute.is_chief(strategy)
    if chief:
        _claim_folder(run.model_dir, fingerprint)
        if run.teacher_cache:
            _make_cache_unless_made(run)
    distribute.barrier(strategy)  # The folder claimed and the cache made before anyone trains.
    cache_minutes = ({"teacher_cache_minutes": _cache_minutes(run.teacher_cache)}
                     if run.teacher_cache else {})
    metrics = train_and_evaluate([recipe(name) for name in run.gin_files], run.bindings,
                                 run.model_dir, split=None, strategy=strategy)
    kept = ledger.record(run, fingerprint, {**metrics, **cache_minutes})
    if chief:
        ledger.write({"partial": True})
        if run.teacher_cache:
            shutil.rmtree(run.teacher_cache)
    return kept


def _make_cache_unless_made(run: Run) -> None:
    from kdod.cache_teacher_lib import make_cache
    from kdod.data import cache

    if not (run.teacher_cache / cache.MANIFEST).is_file():
        run.parse()
        make_cache(run.teacher_cache)


def _cache_minutes(folder: Path) -> float:
    """How long making the finished cache in `folder` took (its manifest's seconds)."""
    from kdod.data import cache

    return cache.load_manifest(folder)["seconds"] / 60


def _claim_folder(model_dir: Path, fingerprint: str) -> None:
    """Marks `model_dir` as the run of `fingerprint`. A folder left by another config of the run
    (its recipe changed since) is moved aside to `<name>.superseded-<n>`: resuming its
    checkpoints would train a mix of the two, or fail on another architecture. A folder of the
    same config is kept, so a stopped run resumes."""
    marker = model_dir / FINGERPRINT_FILE
    if model_dir.exists() and any(model_dir.iterdir()) and not (
            marker.is_file() and marker.read_text() == fingerprint):
        aside = next(path for n in itertools.count(1)
                     if not (path := model_dir.with_name(f"{model_dir.name}.superseded-{n}"))
                     .exists())
        model_dir.rename(aside)
        logging.warning("%s holds a run of another config; moved aside to %s, starting over.",
                        model_dir, aside)
    model_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)


def measure_all(runs: Iterable[Run], ledger: Ledger,
                strategy: tf.distribute.Strategy | None = None,
                train: Callable[[str], bool] = lambda model: True) -> dict[str, list[dict]]:
    """{model: [metrics of each of its runs, in order]}, trained under `strategy` where they
    are not recorded; of the models `train` refuses, the recorded runs alone (the others left
    out)."""
    measured: dict[str, list[dict]] = {}
    for run in runs:
        metrics = (measure(run, ledger, strategy) if train(run.model)
                   else ledger.recorded(run, run.fingerprint()))
        if metrics is not None:
            measured.setdefault(run.model, []).append(metrics)
    return measured


def check_selection(patterns: Sequence[str], models: Iterable[str]) -> None:
    """Raises ConfigError naming the study's models if a pattern (`--only`) matches none."""
    models = list(dict.fromkeys(models))
    unmatched = [pattern for pattern in patterns   # Matched as BenchmarkOptions.trains does.
                 if not any(fnmatch.fnmatchcase(model, pattern) for model in models)]
    if unmatched:
        raise config.ConfigError(f"--only {', '.join(map(repr, unmatched))} matches no model of "
                                 f"the study; its models: {', '.join(models)}.")


def per_model(measured: Mapping[str, list[dict]], metrics: Sequence[str]) -> dict:
    """Mean +- std over seeds of each metric of each model (that all its runs measured), and
    the number of its runs."""
    return {name: {**{metric: mean_std([run[metric] for run in runs]) for metric in metrics
                      if all(metric in run for run in runs)}, "runs": len(runs)}
            for name, runs in measured.items()}


def markdown_table(rows: Mapping[str, Mapping], columns: Mapping[str, str],
                   recipes: Mapping[str, str] | None = None) -> str:
    """A README table: a row per model, `columns` {metric: header}; a metric's cell is its
    mean +- std (over seeds) or its value; with `recipes`, a recipe column."""
    header = ["model", *(["recipe"] if recipes else []), *columns.values()]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, values in rows.items():
        cells = [_cell(values.get(metric)) for metric in columns]
        recipe_cell = [f"`{recipes[name]}`" if name in recipes else ""] if recipes else []
        lines.append("| " + " | ".join([name, *recipe_cell, *cells]) + " |")
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return f"{value['mean']:.3f} +- {value['std']:.3f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}"
