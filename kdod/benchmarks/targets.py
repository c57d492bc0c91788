"""Every target of the benchmarks, in one table, and the check of measured values against it.

A target compares one measured value with a threshold. The results list each group's
thresholds (under "targets", or beside the verdict for a group of one) and a verdict, True when
every checked target of the group is met: `check(group, measured)` returns those entries.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping

_COMPARISONS = {">=": operator.ge, "<=": operator.le}


@dataclasses.dataclass(frozen=True)
class Target:
    """`measured[measure] <comparison> threshold`, listed in the results as `name: threshold`.

    A target without a measure is listed for the reader and never checked.
    """

    name: str
    measure: str | None
    comparison: str  # A key of _COMPARISONS.
    threshold: float

    def met_by(self, measured: Mapping[str, float]) -> bool:
        """Whether `measured` meets the target; a value that was not measured does not."""
        value = measured.get(self.measure)
        return value is not None and bool(_COMPARISONS[self.comparison](value, self.threshold))


@dataclasses.dataclass(frozen=True)
class TargetGroup:
    targets: tuple[Target, ...]
    verdict: str | None  # The results' key of the verdict; None: the caller joins it to another.
    listed_under: str | None = "targets"  # None: the thresholds sit beside the verdict.


TARGETS: dict[str, TargetGroup] = {
    "data": TargetGroup(
        (Target("pipeline_target_images_per_s", "pipeline_images_per_s_augmented", ">=", 300),),
        verdict="pipeline_meets_target", listed_under=None),
    "detector": TargetGroup(
        (Target("student_small_AP50", "student_small_AP50", ">=", 0.9),
         # One ratio per recipe, in the speed table: for the reader to judge.
         Target("head_cost_ratio_max", None, "<=", 1.5)),
        verdict="student_small_meets_AP50"),
    "distill": TargetGroup(
        (Target("gain_AP_points_min", "best_gain_AP_points", ">=", 2.0),
         Target("gap_recovered_min", "gap_recovered", ">=", 0.5)),
        verdict="meets_targets"),
    # Measured once, after every seed: its verdict joins the distill verdict.
    "distill_step_time": TargetGroup(
        (Target("target_max", "ratio", "<=", 1.1),), verdict=None, listed_under=None),
    "ocr": TargetGroup(
        (Target("target_clean_exact_match", "best_clean_exact_match", ">=", 0.95),),
        verdict="meets_target", listed_under=None),
    "ocr_plate_ctc": TargetGroup(
        (Target("clean_exact_match_min", "clean_exact_match", ">=", 0.98),
         Target("ms_per_plate_max (1 core)", "ms_per_plate", "<=", 5.0),
         Target("model_mb_max", "model_mb", "<=", 5.0)),
        verdict="plate_ctc_meets_targets"),
    "export": TargetGroup(
        (Target("int8_AP_loss_points_max", "student_int8_AP_loss_points", "<=", 1.0),
         Target("int8_speedup_min", "student_int8_speedup_vs_keras_float32", ">=", 2.0),
         Target("student_speedup_min (tflite_float32 network)",
                "student_speedup_tflite_float32_network", ">=", 4.0)),
        verdict="meets_targets"),
    "real": TargetGroup(
        (Target("distilled_AP_min", "best_AP", ">=", 0.40),
         Target("distilled_AP50_min", "best_AP50", ">=", 0.85),
         Target("distillation_gain_AP_points_min", "best_gain_AP_points", ">=", 3.0),
         Target("student_train_minutes_max", "best_train_minutes", "<=", 20.0),
         Target("exported_student_ms_max", "best_exported_latency_ms", "<=", 10.0)),
        verdict="meets_targets"),
    # On the real split: how many of cwd, fgd, mgd, dist beat KL + PKD (mean AP over seeds).
    "losses": TargetGroup(
        (Target("new_losses_beating_kl_pkd_min", "new_losses_beating_kl_pkd", ">=", 2),),
        verdict="meets_target", listed_under=None),
    # The teacher cache: distillation costs about a plain student step, and its AP is online
    # distillation's within seed noise (two standard errors of the difference of the means).
    # The MirroredStrategy speed-up is reported for the reader to judge.
    "scale": TargetGroup(
        (Target("cached_step_ratio_max", "cached_step_ratio", "<=", 1.1),
         Target("AP_difference_standard_errors_max", "AP_difference_standard_errors", "<=", 2.0)),
        verdict="meets_targets"),
}


def threshold(group: str, name: str) -> float:
    """The threshold of the target `name` of `group`."""
    return next(t.threshold for t in TARGETS[group].targets if t.name == name)


def met(group: str, measured: Mapping[str, float]) -> bool:
    """Whether `measured` meets every checked target of `group`."""
    return all(t.met_by(measured) for t in TARGETS[group].targets if t.measure is not None)


def check(group: str, measured: Mapping[str, float]) -> dict:
    """The results' entries of `group`: its thresholds and, if it has one, its verdict."""
    spec = TARGETS[group]
    thresholds = {t.name: t.threshold for t in spec.targets}
    entries = {spec.listed_under: thresholds} if spec.listed_under else thresholds
    if spec.verdict:
        entries[spec.verdict] = met(group, measured)
    return entries
