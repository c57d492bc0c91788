"""The benchmarks' bookkeeping, without training: targets, the distill summary, the CLI."""

import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from kdod.benchmarks import NAMES, targets
from kdod.benchmarks.common import BenchmarkOptions


@pytest.mark.parametrize(("value", "expected"), [(300, True), (299.9, False)])
def test_an_at_least_target_is_met_from_its_threshold_up(value, expected):
    assert targets.check("data", {"pipeline_images_per_s_augmented": value}) == {
        "pipeline_target_images_per_s": 300, "pipeline_meets_target": expected}


@pytest.mark.parametrize(("loss", "expected"), [(1.0, True), (1.01, False)])
def test_an_at_most_target_is_met_up_to_its_threshold(loss, expected):
    measured = {"student_int8_AP_loss_points": loss, "student_int8_speedup_vs_keras_float32": 2.0,
                "student_speedup_tflite_float32_network": 4.0}
    assert targets.check("export", measured) == {
        "targets": {"int8_AP_loss_points_max": 1.0, "int8_speedup_min": 2.0,
                    "student_speedup_min (tflite_float32 network)": 4.0},
        "meets_targets": expected}


def test_every_target_of_a_group_must_be_met():
    measured = {"student_int8_AP_loss_points": 0.0, "student_int8_speedup_vs_keras_float32": 2.0,
                "student_speedup_tflite_float32_network": 3.99}
    assert not targets.met("export", measured)


def test_a_value_not_measured_misses_its_target():
    assert targets.check("ocr", {}) == {"target_clean_exact_match": 0.95, "meets_target": False}
    assert not targets.met("distill", {"best_gain_AP_points": 3.0, "gap_recovered": math.nan})


def test_a_listed_target_without_a_measure_is_not_checked():
    assert targets.check("detector", {"student_small_AP50": 0.9}) == {
        "targets": {"student_small_AP50": 0.9, "head_cost_ratio_max": 1.5},
        "student_small_meets_AP50": True}


def test_a_group_without_a_verdict_only_lists_its_threshold():
    assert targets.check("distill_step_time", {"ratio": 5.0}) == {"target_max": 1.1}
    assert targets.met("distill_step_time", {"ratio": 1.1})


def test_every_target_compares_with_a_known_operator():
    for group in targets.TARGETS.values():
        assert all(t.comparison in (">=", "<=") for t in group.targets)


def test_distill_summary_gives_the_best_recipe_its_gain_and_the_gap_recovered():
    from kdod.benchmarks import distill

    ap = {"teacher": [0.5, 0.7], "student alone": [0.3, 0.3], "kl_logits": [0.35, 0.45],
          "feature_imitation": [0.36, 0.36], "box (bounded + imitation)": [0.2, 0.2],
          "combined": [0.38, 0.39]}
    summary = distill.summary(ap)
    assert summary["best_recipe"] == "kl_logits"  # mean 0.40
    assert summary["seeds"] == 2
    assert summary["AP"]["teacher"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1),
                                        "values": [0.5, 0.7]}
    assert summary["best_gain_AP_points"] == pytest.approx(10.0)  # 100 * (0.40 - 0.30)
    assert summary["gap_recovered"] == pytest.approx(1 / 3)  # 0.10 / (0.60 - 0.30)
    assert summary["targets"] == {"gain_AP_points_min": 2.0, "gap_recovered_min": 0.5}
    assert summary["meets_targets"] is False  # The gain is enough, the share recovered is not.


def test_distill_summary_without_a_gap_to_recover():
    from kdod.benchmarks import distill

    ap = {name: [0.4] for name in ("teacher", "student alone", *distill.RECIPES)}
    summary = distill.summary(ap)
    assert math.isnan(summary["gap_recovered"]) and summary["meets_targets"] is False


def _real_run(ap: float, minutes: float = 15.0) -> dict:
    return {"AP": ap, "AP50": ap + 0.45, "AP_small": ap / 2, "train_minutes": minutes}


def test_real_summary_picks_the_best_distilled_student_and_checks_the_targets():
    from kdod.benchmarks import real

    measured = {"teacher": [_real_run(0.5)] * 2, "student alone": [_real_run(0.36)] * 2,
                "kl_logits": [_real_run(0.40), _real_run(0.42)],  # mean 0.41: the best
                "feature_imitation (PKD)": [_real_run(0.38)] * 2}
    summary = real.summary(measured)
    assert summary["best_recipe"] == "kl_logits" and summary["seeds"] == 2
    assert summary["best_AP"] == pytest.approx(0.41)
    assert summary["best_AP50"] == pytest.approx(0.86)
    assert summary["best_gain_AP_points"] == pytest.approx(5.0)  # 100 * (0.41 - 0.36)
    assert summary["models"]["kl_logits"]["AP"]["std"] == pytest.approx(0.01)
    assert summary["meets_targets"] is False  # No exported latency measured yet.
    summary["best_exported_latency_ms"] = 9.5
    assert targets.met("real", summary)
    slow = real.summary({**measured, "kl_logits": [_real_run(0.41, minutes=21.0)] * 2})
    assert slow["best_recipe"] == "feature_imitation (PKD)"  # The best within 20 minutes.
    assert not targets.met("real", {**slow, "best_exported_latency_ms": 9.5})
    all_slow = real.summary({**measured, "kl_logits": [_real_run(0.41, minutes=21.0)] * 2,
                             "feature_imitation (PKD)": [_real_run(0.38, minutes=25.0)] * 2})
    assert all_slow["best_recipe"] == "kl_logits" and all_slow["best_train_minutes"] == 21.0
    assert not targets.met("real", {**all_slow, "best_exported_latency_ms": 9.5})


def test_real_gains_are_over_the_student_alone_on_the_same_schedule():
    from kdod.benchmarks import real

    long_cached = "feature_imitation (PKD), 1500 steps, teacher cache"
    measured = {"student alone": [_real_run(0.36)] * 2,
                "student alone, 1500 steps": [_real_run(0.38, minutes=30.0)] * 2,
                "feature_imitation (PKD)": [_real_run(0.40, minutes=27.0)] * 2,
                long_cached: [{**_real_run(0.43, minutes=17.0), "teacher_cache_minutes": 12.0}]}
    summary = real.summary(measured)
    models = summary["models"]
    assert models["feature_imitation (PKD)"]["gain_AP_points"] == pytest.approx(4.0)
    assert models[long_cached]["gain_AP_points"] == pytest.approx(5.0)  # Over 0.38, not 0.36.
    assert "gain_AP_points" not in models["student alone, 1500 steps"]
    assert models[long_cached]["teacher_cache_minutes"]["mean"] == 12.0
    assert "teacher_cache_minutes" not in models["feature_imitation (PKD)"]
    assert (summary["best_recipe"], summary["best_gain_AP_points"]) == (long_cached,
                                                                        pytest.approx(5.0))
    assert "| 5.00 | 17.000 +- 0.000 | 12.000 +- 0.000 |" in real.table(summary)


def test_real_plan_trains_the_cached_recipes_and_the_long_student_from_seed_0s_teacher():
    from kdod.benchmarks import real

    plan = {run.model: run for run in real.seed_plan(BenchmarkOptions(), seed=1)}
    teacher_dir = "benchmarks/runs/real/seed0/teacher"
    long_student = plan["student alone, 1500 steps"]
    assert long_student.gin_files == ("real/student.gin", "real/long.gin")
    assert long_student.model_dir.as_posix() == "benchmarks/runs/real/seed1/student_long"
    long_cached = plan["feature_imitation (PKD), 1500 steps, teacher cache"]
    assert long_cached.gin_files == ("real/student.gin", "real/pkd_long.gin")
    assert long_cached.teacher.model_dir.as_posix() == teacher_dir
    assert long_cached.teacher_cache.as_posix() == "benchmarks/runs/real/seed1/pkd_long_cache"
    long_cached.parse()
    import gin

    assert gin.query_parameter("train.steps") == 1500
    assert gin.query_parameter("DistillerConfig.losses") == {"feature_imitation": 2.0}


def test_real_plan_distills_the_distribution_head_student_from_the_teacher_with_that_head():
    import gin

    from kdod.benchmarks import losses, real

    plan = {run.model: run for run in real.seed_plan(BenchmarkOptions(), seed=1)}
    baseline = plan["student alone, 1500 steps, distribution head"]
    assert baseline.gin_files == ("real/student.gin", "real/long.gin", "distribution_head.gin")
    assert baseline.model_dir.name == "student_long_distribution_head" and baseline.teacher is None
    head = plan["feature_imitation (PKD), 1500 steps, distribution head, teacher cache"]
    assert head.teacher == losses.teacher_run(losses.DATA_SETS[0], BenchmarkOptions(),
                                              losses.HEADS["ld"])
    assert head.teacher.model_dir.as_posix() == "benchmarks/runs/real/seed0/teacher_ld"
    assert head.teacher_cache.name == "pkd_long_head_cache"
    for run in (baseline, head):
        run.parse()
        assert (gin.query_parameter("train.steps"),
                gin.query_parameter("DetectorConfig.box_bins")) == (1500, 16)
    # Its gain is over the student alone with the same head and schedule.
    assert real.BASELINES[head.model] == baseline.model


@pytest.mark.parametrize("variant, folder, mosaic_batches", [("mosaic", "mosaic", None),
                                                           ("close_mosaic", "close_mosaic", 1200)])
def test_real_plan_measures_mosaics_on_the_student_alone_and_from_the_teacher_cache(
        variant, folder, mosaic_batches):
    import gin

    from kdod.benchmarks import real

    plan = {run.model: run for run in real.seed_plan(BenchmarkOptions(), seed=2)}
    baseline = plan[f"student alone, 1500 steps, {variant}"]
    assert baseline.model_dir.name == f"student_long_{folder}" and baseline.teacher is None
    cached = plan[f"feature_imitation (PKD), 1500 steps, {variant}, teacher cache"]
    assert cached.teacher.model_dir.as_posix() == "benchmarks/runs/real/seed0/teacher"
    assert cached.teacher_cache.name == f"pkd_long_{folder}_cache"
    for run in (baseline, cached):
        run.parse()
        assert (gin.query_parameter("train.steps"), gin.query_parameter("Augmentation.mosaic_prob"),
                _bound("Augmentation.mosaic_batches")) == (1500, 0.5, mosaic_batches)
    assert real.BASELINES[cached.model] == baseline.model


def _bound(binding: str):
    """The gin binding's value, None when unbound."""
    import gin

    try:
        return gin.query_parameter(binding)
    except ValueError:
        return None


def test_real_runs_take_the_extra_bindings_and_distill_from_seed_0s_teacher():
    from kdod.benchmarks import real

    options = BenchmarkOptions(bindings=("REAL_TEST = ('number_plates', 'test', 1.0)",))
    teacher, *first = real.seed_plan(options, seed=0)
    plan = real.seed_plan(options, seed=1)
    assert teacher.model == "teacher" and plan[0].model == "student alone"
    assert [run.model for run in first] == [run.model for run in plan]
    assert teacher.model_dir.as_posix() == "benchmarks/runs/real/seed0/teacher"
    assert "train.seed = 0" in teacher.bindings and options.bindings[0] in teacher.bindings
    for run in plan:
        assert "train.seed = 1" in run.bindings and options.bindings[0] in run.bindings
    distilled = plan[1:1 + len(real.DISTILLED)]
    assert all(run.teacher == teacher and run.bindings[-1]
               == f"DistillerConfig.teacher_dir = '{teacher.model_dir}'" for run in distilled)
    assert plan[1].gin_files == ("real/student.gin", "losses/pkd.gin")


def test_real_augmentation_variants_train_the_student_alone_with_their_augmentation():
    from kdod.benchmarks import real
    from kdod.data.augment import Augmentation

    plan = real.seed_plan(BenchmarkOptions(), seed=2)
    student = plan[0]
    variants = {run.model: run for run in plan if run.model in real.AUGMENTED}
    assert list(variants) == list(real.AUGMENTED) == [run.model for run in plan[-3:]]
    student.parse()
    default = Augmentation()
    for run in variants.values():
        assert run.teacher is None and run.bindings == student.bindings
        assert run.model_dir.parent == student.model_dir.parent
        run.parse()
        changed = {field for field, value in vars(Augmentation()).items()
                   if value != getattr(default, field)}
        assert changed and changed <= {"blur_prob", "jpeg_prob", "warp_prob"} | {
            "max_blur_sigma", "min_jpeg_quality", "max_rotation", "max_perspective"}
    assert {"blur_prob", "warp_prob"} <= changed  # camera + tilt, the last variant


def test_options_put_runs_beside_the_results():
    assert BenchmarkOptions().output_path("ocr").as_posix() == "benchmarks/ocr.json"
    assert BenchmarkOptions().runs_dir.as_posix() == "benchmarks/runs"
    options = BenchmarkOptions(output=REPO / "out" / "x.json")
    assert (options.output_path("ocr"), options.runs_dir) == (REPO / "out" / "x.json",
                                                               REPO / "out" / "runs")


def _entry_point_error(*arguments: str) -> str:
    """The `error:` line of `python -m kdod.benchmark arguments`, refused as a usage error."""
    result = subprocess.run([sys.executable, "-m", "kdod.benchmark", *arguments], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.parametrize("argv", [["nosuch"], [], ["data", "nosuch"]])
def test_the_entry_point_names_the_benchmarks_when_given_no_known_one(argv):
    line = _entry_point_error(*argv)
    assert all(name in line for name in NAMES), line


@pytest.mark.parametrize("arguments, expected", [
    (["real", "--recorded_only"], ("losses --recorded_only", "got real")),
    (["export", "--only=student*"], ("real and losses studies", "got export"))])
def test_a_study_flag_with_another_benchmark_is_refused_before_training(arguments, expected):
    line = _entry_point_error(*arguments)
    assert all(part in line for part in expected), line


def test_only_takes_a_whole_model_name_pattern_commas_and_all(tmp_path):
    line = _entry_point_error("real", "--only=*mosiac, teacher cache",
                              f"--output={tmp_path}/real.json")
    assert "'*mosiac, teacher cache' matches no model" in line, line
    assert "feature_imitation (PKD), 1500 steps, mosaic, teacher cache" in line, line
    assert not (tmp_path / "runs").exists()


def test_ocr_verdicts_pick_the_best_engine_and_check_plate_ctc_targets():
    from kdod.benchmarks import ocr

    def engine(exact, ms, mb):
        modes = {"selected": {"exact_match": exact}, "selected_formats": {"exact_match": exact}}
        return {"clean": {**modes, "ms_per_plate": ms}, "model_mb": mb}

    verdicts = ocr._verdicts({"rapidocr": engine(0.96, 30.0, 15.6), "tesseract": {
        "unavailable": "not installed"}, "plate_ctc": engine(0.985, 2.0, 1.2)})
    assert verdicts["best_engine_clean"] == "plate_ctc" and verdicts["meets_target"]
    assert verdicts["plate_ctc"] == {
        "clean_exact_match": 0.985, "ms_per_plate": 2.0, "model_mb": 1.2,
        "targets": {"clean_exact_match_min": 0.98, "ms_per_plate_max (1 core)": 5.0,
                    "model_mb_max": 5.0}, "plate_ctc_meets_targets": True}
    slow = ocr._verdicts({"plate_ctc": engine(0.99, 5.5, 1.2)})
    assert not slow["plate_ctc"]["plate_ctc_meets_targets"]
    assert ocr._verdicts({})["plate_ctc"]["plate_ctc_meets_targets"] is False


def test_scale_summary_compares_cached_with_online_distillation_and_checks_the_step_ratio():
    from kdod.benchmarks import scale

    timing = {"student_step_s": 0.2, "cached_step_s": 0.21, "online_step_s": 0.3,
              "cached_step_ratio": 1.05, "online_step_ratio": 1.5}
    mirrored = {"default_images_per_s": 10.0, "mirrored_images_per_s": 15.0, "speedup": 1.5}
    summary = scale.summary({"cached": [0.40, 0.42], "online": [0.41, 0.43]}, timing,
                            2.5e5, mirrored)
    assert summary["cached_minus_online_AP_points"] == pytest.approx(-1.0)
    assert summary["AP"]["cached"]["std"] == pytest.approx(0.01) and summary["seeds"] == 2
    assert summary["cache_MB_per_image"] == pytest.approx(0.25)
    # Seeds' sample std 0.0141 each: the difference of the means has a standard error of
    # sqrt(2 * 0.0002 / 2) = 0.0141, so -1 point is 0.71 standard errors: equal within noise.
    assert summary["AP_difference_standard_errors"] == pytest.approx(1 / np.sqrt(2))
    assert summary["targets"]["cached_step_ratio_max"] == 1.1 and summary["meets_targets"]
    slow = scale.summary({"cached": [0.4, 0.41], "online": [0.4, 0.41]},
                         {**timing, "cached_step_ratio": 1.2}, 2.5e5, mirrored)
    assert slow["meets_targets"] is False
    worse = scale.summary({"cached": [0.30, 0.31], "online": [0.40, 0.41]}, timing, 2.5e5,
                          mirrored)  # 10 points at a standard error of sqrt(2 * 0.00005 / 2).
    assert worse["AP_difference_standard_errors"] == pytest.approx(10 / np.sqrt(0.5))
    assert worse["meets_targets"] is False
    one_seed = scale.summary({"cached": [0.4], "online": [0.4]}, timing, 2.5e5, mirrored)
    assert one_seed["AP_difference_standard_errors"] is None and not one_seed["meets_targets"]


def test_scale_compares_the_real_study_s_online_and_cached_pkd_runs(tmp_path):
    from kdod.benchmarks import real, scale

    plan = {run.model: run for run in real.seed_plan(BenchmarkOptions(output=tmp_path / "x"), 0)}
    online, cached = plan[scale.ONLINE], plan[scale.CACHED]
    assert online.teacher_cache is None and cached.teacher_cache is not None
    assert online.gin_files == cached.gin_files == ("real/student.gin", "losses/pkd.gin")


def test_scale_step_times_run_the_student_cached_and_online_steps_on_a_cached_batch(
        tiny_data_dir, tmp_path):
    from kdod.benchmarks import scale
    from kdod.benchmarks.study import Ledger, Run, measure_all
    from kdod.cache_teacher_lib import make_cache

    common = (f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.steps = 2",
              "train.summary_images = 0", "input_pipeline.batch_size = 4")
    teacher = Run("teacher", ("tiny.gin",), tmp_path / "teacher", common)
    measure_all([teacher], Ledger(tmp_path / "study.json", ("AP",)))
    cached = Run("kl", ("tiny.gin", "losses/kl.gin"), tmp_path / "kl", common, teacher=teacher,
                 teacher_cache=tmp_path / "big_cache")
    cached.parse()
    make_cache(tmp_path / "small", examples=8, verbose=False)
    timing = scale.step_times(cached, tmp_path / "small", repeats=1)
    assert timing["batch_size"] == 4
    assert timing["cached_step_ratio"] == timing["cached_step_s"] / timing["student_step_s"] > 0
    assert timing["online_step_s"] > 0
