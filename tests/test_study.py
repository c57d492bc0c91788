"""Studies of trained recipes (kdod/benchmarks/study.py) and the losses benchmark's bookkeeping."""

from __future__ import annotations

import json
import shutil

import pytest

from kdod.benchmarks import losses, real, targets
from kdod.benchmarks.common import BenchmarkOptions
from kdod.benchmarks.study import FINGERPRINT_FILE, Ledger, Run, markdown_table, measure_all
from kdod.config import ConfigError

KEEP = ("AP", "train_minutes")


def _tiny_runs(tmp_path, data_dir: str, steps: int = 4) -> tuple[Run, Run]:
    common = (f"input_pipeline.data_dir = '{data_dir}'", f"train.steps = {steps}",
              "train.checkpoint_every = 4", "train.summary_images = 0")
    teacher = Run("teacher", ("tiny.gin",), tmp_path / "runs" / "teacher", common)
    student = Run("kl", ("tiny.gin", "losses/kl.gin"), tmp_path / "runs" / "kl", common,
                  teacher=teacher)
    return teacher, student


def test_recorded_runs_are_not_trained_again_and_a_gone_teacher_is(tiny_data_dir, tmp_path):
    results = tmp_path / "study.json"
    teacher, student = _tiny_runs(tmp_path, tiny_data_dir)
    first = measure_all([teacher, student], Ledger(results, KEEP))
    assert set(first) == {"teacher", "kl"}
    recorded = json.loads(results.read_text())["runs"]
    assert recorded[str(student.model_dir)]["metrics"] == first["kl"][0]
    assert f"DistillerConfig.teacher_dir = '{teacher.model_dir}'" in student.bindings

    shutil.rmtree(tmp_path / "runs")  # A fresh clone: the records stay, the folders are gone.
    again = measure_all([teacher, student], Ledger(results, KEEP))
    assert again == first and not (tmp_path / "runs").exists()

    _, longer = _tiny_runs(tmp_path, tiny_data_dir, steps=8)  # Another config: trained again,
    measure_all([longer], Ledger(results, KEEP))  # and its teacher first, its folder being gone.
    assert (teacher.model_dir / "detector.weights.h5").is_file()
    assert (longer.model_dir / "checkpoints" / "ckpt-8.weights.h5").is_file()
    assert len(json.loads(results.read_text())["runs"]) == 2  # The same two folders.


def test_a_run_recorded_by_a_study_sharing_it_is_taken_not_trained(tiny_data_dir, tmp_path):
    teacher, student = _tiny_runs(tmp_path, tiny_data_dir)
    shared = tmp_path / "real.json"
    metrics = {"AP": 0.5, "train_minutes": 3.0}
    shared.write_text(json.dumps({"runs": {
        str(teacher.model_dir): {"model": "teacher", "fingerprint": teacher.fingerprint(),
                                 "metrics": metrics},
        str(student.model_dir): {"model": "kl", "fingerprint": "another config",
                                 "metrics": metrics}}}))
    ledger = Ledger(tmp_path / "losses.json", KEEP, shared=[shared])
    assert measure_all([teacher], ledger) == {"teacher": [metrics]}
    assert not teacher.model_dir.exists()  # Neither trained nor evaluated again.
    assert ledger.runs[str(teacher.model_dir)]["metrics"] == metrics  # Copied in.
    assert ledger.recorded(student, student.fingerprint()) is None  # Another config: not it.


def test_a_folder_left_by_another_config_of_a_run_is_moved_aside_not_resumed(tiny_data_dir,
                                                                            tmp_path):
    results = tmp_path / "study.json"
    teacher, _ = _tiny_runs(tmp_path, tiny_data_dir)
    measure_all([teacher], Ledger(results, KEEP))
    _, longer = _tiny_runs(tmp_path, tiny_data_dir, steps=8)
    measure_all([longer.teacher], Ledger(results, KEEP))
    aside = teacher.model_dir.with_name("teacher.superseded-1")
    assert (aside / "checkpoints" / "ckpt-4.weights.h5").is_file()
    assert (aside / FINGERPRINT_FILE).read_text() == teacher.fingerprint()
    assert (teacher.model_dir / FINGERPRINT_FILE).read_text() == longer.teacher.fingerprint()
    assert (teacher.model_dir / "checkpoints" / "ckpt-8.weights.h5").is_file()


def test_a_cached_run_makes_its_cache_first_records_its_minutes_and_deletes_it(tiny_data_dir,
                                                                              tmp_path):
    results = tmp_path / "study.json"
    teacher, online = _tiny_runs(tmp_path, tiny_data_dir)
    folder = tmp_path / "runs" / "kl_cache"
    cached = Run("kl cached", online.gin_files, tmp_path / "runs" / "kl_cached",
                 online.bindings[:-1], teacher=teacher, teacher_cache=folder)
    assert cached.bindings[-2:] == (f"DistillerConfig.teacher_dir = '{teacher.model_dir}'",
                                    f"DistillerConfig.teacher_cache = '{folder}'")
    measured = measure_all([teacher, cached], Ledger(results, (*KEEP, "teacher_cache_minutes")))
    assert measured["kl cached"][0]["teacher_cache_minutes"] > 0
    assert "teacher_cache_minutes" not in measured["teacher"][0]  # Kept where measured.
    assert not folder.exists()  # Gigabytes at real sizes: deleted once the run is recorded.
    log = (cached.model_dir / "operative_config.gin").read_text()
    assert "teacher_cache = " in log and str(folder) in log  # It trained from the cache.


def test_markdown_table_gives_mean_and_std_or_the_value():
    rows = {"a": {"AP": {"mean": 0.5, "std": 0.0125}, "gain": 1.234}, "b": {"AP": {"mean": 0.25,
                                                                                   "std": 0.0}}}
    assert markdown_table(rows, {"AP": "AP", "gain": "gain"}, recipes={"a": "x.gin"}) == (
        "| model | recipe | AP | gain |\n| --- | --- | --- | --- |\n"
        "| a | `x.gin` | 0.500 +- 0.013 | 1.23 |\n| b |  | 0.250 +- 0.000 |  |\n")


def _runs(ap: float, minutes: float) -> list[dict]:
    return [{"AP": ap - 0.01, "AP50": 0.8, "AP_small": 0.1, "train_minutes": minutes},
            {"AP": ap + 0.01, "AP50": 0.8, "AP_small": 0.1, "train_minutes": minutes}]


def test_losses_summary_gains_overheads_and_the_new_losses_against_kl_pkd():
    measured = {"teacher": _runs(0.5, 40), "student alone": _runs(0.30, 10),
                "KL + PKD": _runs(0.35, 15), "cwd": _runs(0.36, 12), "fgd": _runs(0.34, 14),
                "mgd": _runs(0.37, 13), "kl_logits": _runs(0.33, 11)}
    summary = losses.summary(measured)
    cwd = summary["models"]["cwd"]
    assert cwd["gain_AP_points"] == pytest.approx(6.0)  # 100 * (0.36 - 0.30)
    assert cwd["time_overhead"] == pytest.approx(1.2)  # 12 / 10 minutes
    assert summary["new_vs_kl_pkd_AP_points"] == pytest.approx({"cwd": 1.0, "fgd": -1.0,
                                                                "mgd": 2.0})
    assert summary["new_losses_beating_kl_pkd"] == 2
    assert targets.check("losses", summary)["meets_target"] is True
    assert losses.best_pair(summary["models"]) == ("mgd", "cwd")


def test_a_loss_needing_a_head_is_also_measured_against_the_student_alone_with_it():
    measured = {"student alone": _runs(0.30, 10), "student alone (distribution head)":
                _runs(0.33, 11), "ld": _runs(0.37, 14), "ld + cwd": _runs(0.38, 16),
                "cwd": _runs(0.36, 12)}
    models = losses.summary(measured)["models"]
    assert models["ld"]["gain_AP_points"] == pytest.approx(7.0)  # 100 * (0.37 - 0.30)
    assert models["ld"]["gain_over_control_AP_points"] == pytest.approx(4.0)  # 0.37 - 0.33
    assert models["ld + cwd"]["gain_over_control_AP_points"] == pytest.approx(5.0)
    assert "gain_over_control_AP_points" not in models["cwd"]
    assert losses.best_pair(models) == ("ld", "cwd")  # The control is no loss to pair.


def test_the_best_pair_runs_both_loss_files_with_their_own_weights(tmp_path):
    options = BenchmarkOptions(output=tmp_path / "losses.json")
    plan = losses.seed_plan(losses.DATA_SETS[0], options, 0, losses.LOSS_FILES)
    pair = losses.pair_run(plan, "PKD", "kl_logits")
    assert pair.gin_files == ("real/student.gin", "losses/pkd.gin", "losses/kl.gin")
    assert pair.model_dir == tmp_path / "runs" / "real" / "seed0" / "pkd_kl"
    assert "DistillerConfig.losses = {'feature_imitation': 2.0, 'kl_logits': 1.0}" in (
        pair.bindings)
    assert pair.bindings[-1] == f"DistillerConfig.teacher_dir = '{plan[0].model_dir}'"
    later = losses.pair_run(losses.seed_plan(losses.DATA_SETS[0], options, 2, losses.LOSS_FILES),
                            "PKD", "kl_logits")
    assert later.teacher == plan[0] and later.model_dir.parent.name == "seed2"
    pair.parse()  # The bindings parse: the later losses binding wins over the files'.


def test_ld_distills_from_its_own_teacher_trained_once_with_the_distribution_head(tmp_path):
    options = BenchmarkOptions(output=tmp_path / "losses.json")
    plan = losses.seed_plan(losses.DATA_SETS[0], options, 0, losses.LOSS_FILES)
    teachers = [run for run in plan if run.model in losses.TEACHERS]
    assert [run.model_dir.name for run in teachers] == ["teacher", "teacher_ld"]
    assert teachers[1].gin_files == ("real/teacher.gin", "distribution_head.gin")
    by_model = {run.model: run for run in plan}
    assert by_model["ld"].teacher == teachers[1] and by_model["cwd"].teacher == teachers[0]
    later = losses.seed_plan(losses.DATA_SETS[0], options, 1, losses.LOSS_FILES)
    assert not any(run.model in losses.TEACHERS for run in later)
    assert losses.pair_run(later, "cwd", "ld").teacher == teachers[1]
    assert losses.pair_run(later, "cwd", "mgd").teacher == teachers[0]
    # Its control, in every seed: the student alone with the head, distilling from nothing.
    control = by_model["student alone (distribution head)"]
    assert control.gin_files == ("real/student.gin", "distribution_head.gin")
    assert control.teacher is None and control.model_dir.name == "student_ld"
    assert {run.model: run for run in later}[control.model].model_dir.parent.name == "seed1"
    # The same teacher as gin/real/teacher_ld.gin, which the README trains by hand.
    by_hand = Run("teacher", ("real/teacher_ld.gin",), teachers[1].model_dir, teachers[1].bindings)
    assert by_hand.fingerprint() == teachers[1].fingerprint()


def test_the_losses_and_real_benchmarks_share_their_real_runs(tmp_path):
    options = BenchmarkOptions(output=tmp_path / "x.json")
    for seed, shared in ((0, 4), (1, 3)):  # Seed 0's plan holds the one teacher.
        ours = {run.model_dir: run for run in losses.seed_plan(
            losses.DATA_SETS[0], options, seed, losses.LOSS_FILES)}
        theirs = real.seed_plan(options, seed)
        for run in theirs:
            if run.model_dir in ours:
                assert ours[run.model_dir].fingerprint() == run.fingerprint(), run.model
        assert sum(run.model_dir in ours for run in theirs) == shared


def test_the_real_plan_trains_pkd_again_from_a_teacher_cache_of_its_seed(tmp_path):
    plan = {run.model: run for run in real.seed_plan(BenchmarkOptions(output=tmp_path / "x.json"),
                                                     1)}
    online, cached = plan["feature_imitation (PKD)"], plan["feature_imitation (PKD), teacher cache"]
    assert (cached.teacher, cached.gin_files) == (online.teacher, online.gin_files)
    assert cached.bindings == (*online.bindings,
                               f"DistillerConfig.teacher_cache = '{cached.teacher_cache}'")
    assert cached.model_dir == online.model_dir.with_name("pkd_cached")
    assert cached.teacher_cache == online.model_dir.with_name("pkd_cache")


def test_recorded_only_tabulates_the_runs_recorded_so_far_and_trains_none(tmp_path):
    options = BenchmarkOptions(output=tmp_path / "losses.json", seeds=2, recorded_only=True)
    plan = {run.model: run for run in losses.seed_plan(losses.DATA_SETS[0], options, 0,
                                                       losses.PLANNED_LOSS_FILES)}
    ledger = Ledger(options.output, losses.METRICS)
    for name, ap in (("student alone", 0.30), ("cwd", 0.34), ("kl_logits", 0.32)):
        ledger.record(plan[name], plan[name].fingerprint(),
                      {"AP": ap, "AP50": 0.7, "AP_small": 0.1, "train_minutes": 10.0})
    ledger.write({"partial": True})

    results = losses.run(options)
    real_runs = results["real"]
    assert real_runs["models"]["cwd"]["gain_AP_points"] == pytest.approx(4.0)
    assert real_runs["models"]["cwd"]["runs"] == 1
    # 2 teachers + 2 seeds x (student alone + 8 distilled + ld's control) + 2 best-pair runs,
    # 3 recorded.
    assert real_runs["runs_left"] == 21 and results["synthetic"]["runs_left"] == 24
    assert results["partial"] and results["meets_target"] is False
    assert not (tmp_path / "runs").exists()  # Nothing trained.
    table = (tmp_path / "losses.md").read_text()
    assert ("| cwd | 1 | 0.340 +- 0.000 | 0.700 +- 0.000 | 0.100 +- 0.000 | 4.00 |  | 1.00 |"
            in table)  # No control: ld's alone has one.
    assert (tmp_path / "losses.png").is_file()


def test_only_trains_the_models_its_patterns_match():
    options = BenchmarkOptions(only=("*mosaic*", "teacher"))
    assert options.trains("student alone, 1500 steps, mosaic") and options.trains("teacher")
    assert not options.trains("student alone") and not options.trains("teacher, ld")
    assert not BenchmarkOptions(only=("teacher",), recorded_only=True).trains("teacher")
    assert BenchmarkOptions().trains("student alone")


def test_only_counts_the_recorded_runs_of_other_models_and_trains_none_of_them(tmp_path):
    options = BenchmarkOptions(output=tmp_path / "real.json", seeds=1, only=("student alone",))
    plan = {run.model: run for run in real.seed_plan(options, 0)}
    ledger = Ledger(options.output, real.METRICS)
    for name, ap in (("student alone", 0.30), ("feature_imitation (PKD)", 0.34)):
        ledger.record(plan[name], plan[name].fingerprint(),
                      {"AP": ap, "AP50": 0.7, "AP_small": 0.1, "train_minutes": 10.0})
    ledger.write({"partial": True})

    results = real.run(options)  # The student alone is recorded: nothing to train.
    assert results["best_recipe"] == "feature_imitation (PKD)"
    assert results["models"]["feature_imitation (PKD)"]["gain_AP_points"] == pytest.approx(4.0)
    assert set(results["models"]) == {"student alone", "feature_imitation (PKD)"}
    assert "best_exported_latency_ms" not in results  # Not timed: its run is not here.
    assert results["partial"] and len(results["runs"]) == 2
    assert results["runs_left"] == len(real.seed_plan(options, 0)) - 2
    assert not (tmp_path / "runs").exists()
    assert ("| feature_imitation (PKD) | `losses/pkd.gin` | 1 | 0.340 +- 0.000 |"
            in (tmp_path / "real.md").read_text())
    assert (tmp_path / "real.png").is_file()


def test_only_with_a_pattern_matching_no_model_names_the_studys_models(tmp_path):
    with pytest.raises(ConfigError, match=r"'\*mosiac\*' matches no model.*1500 steps, mosaic"):
        real.run(BenchmarkOptions(output=tmp_path / "real.json", only=("*mosiac*",)))
    results = losses.run(BenchmarkOptions(output=tmp_path / "losses.json", seeds=2,
                                          only=("cwd + *",)))  # No pair before two losses ran.
    assert results["real"]["runs_left"] == 24 and not (tmp_path / "runs").exists()
