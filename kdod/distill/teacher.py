"""Restoring a trained run's detector (a teacher, or weights to start from) from its model_dir,
built by its own operative gin config.

A teacher that is not a kdod run (an exported TF OD API SavedModel, ...) is loaded by the
first registered teacher loader (kdod.TEACHERS, filled by plugins) that recognises the path.

The teacher's operative config is parsed under the gin scope "teacher", so its settings
(backbone, widths, anchors, ...) never mix with the student's unscoped ones: the
operative config lists every parameter the teacher's run used, defaults included.
"""

from __future__ import annotations

import re
from pathlib import Path

import gin

from kdod import config, registry
from kdod.checkpoints import DETECTOR_WEIGHTS, load_detector
from kdod.detection.detector import Detector, DetectorConfig
from kdod.errors import KdodError

TEACHER_SCOPE = "teacher"
# A binding line "selector.param = value" (possibly scoped), not a comment or continuation.
_BINDING = re.compile(r"^(?P<key>[A-Za-z_][\w./]*\.\w+)\s*=")


class TeacherNotFoundError(KdodError):
    """A run's model_dir (a teacher's, or one to warm-start from) lacks its config or weights."""


def scope_bindings(gin_text: str, scope: str) -> str:
    """Prefixes every binding of a gin config text with `scope/`."""
    return "\n".join(f"{scope}/{line}" if _BINDING.match(line) else line
                     for line in gin_text.splitlines())


def load_teacher(model_dir: str | Path, train_command_hint: str = ""):
    """The trained, frozen teacher of `model_dir`: a Detector, or a registered loader's teacher."""
    for name in registry.TEACHERS.list():
        loader = registry.TEACHERS.get(name)
        if loader.can_load(model_dir):
            return loader(model_dir)
    hint = train_command_hint or (f"python -m kdod.train --gin_file=gin/teacher_small.gin "
                                  f"--model_dir={model_dir}")
    teacher = load_run_detector(model_dir, TEACHER_SCOPE, "teacher", hint,
                                also_accepted=", or an exported SavedModel")
    teacher.trainable = False
    return teacher


def load_run_detector(model_dir: str | Path, scope: str, role: str, train_command_hint: str,
                      also_accepted: str = "") -> Detector:
    """The trained Detector of a kdod run, built from its operative config parsed under `scope`
    (so its settings never mix with the unscoped ones of the run being configured)."""
    folder = Path(model_dir)
    operative = folder / config.OPERATIVE_CONFIG
    weights = folder / DETECTOR_WEIGHTS
    if not operative.is_file() or not weights.is_file():
        raise TeacherNotFoundError(f"No trained {role} in {model_dir} (need "
                                   f"{config.OPERATIVE_CONFIG} and {DETECTOR_WEIGHTS}"
                                   f"{also_accepted}). Train one first:\n  {train_command_hint}")
    gin.parse_config(scope_bindings(operative.read_text(), scope))
    with gin.config_scope(scope):
        detector = Detector(DetectorConfig(), name=role)
    return load_detector(detector, folder)
