"""Restoring a trained teacher from its model_dir, built by its own operative gin config.

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
    """The teacher's model_dir lacks its config or weights."""


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
    folder = Path(model_dir)
    operative = folder / config.OPERATIVE_CONFIG
    weights = folder / DETECTOR_WEIGHTS
    if not operative.is_file() or not weights.is_file():
        hint = train_command_hint or (f"python -m kdod.train --gin_file=gin/teacher_small.gin "
                                      f"--model_dir={model_dir}")
        raise TeacherNotFoundError(f"No trained teacher in {model_dir} (need "
                                   f"{config.OPERATIVE_CONFIG} and {DETECTOR_WEIGHTS}, or an "
                                   f"exported SavedModel). Train one first:\n  {hint}")
    gin.parse_config(scope_bindings(operative.read_text(), TEACHER_SCOPE))
    with gin.config_scope(TEACHER_SCOPE):
        teacher = Detector(DetectorConfig(), name="teacher")
    load_detector(teacher, folder)
    teacher.trainable = False
    return teacher
