"""A run's files on disk: checkpoints (weights + optimizer state + step) and the detector alone.

    model_dir/checkpoints/ckpt-<step>.weights.h5   resumable training state, the last few kept
    model_dir/detector.weights.h5                  the detector's network alone (no optimizer,
                                                   no distillation adapters): evaluation,
                                                   export and teachers load it

Both are written to a ``partial-*`` file first and renamed, so a kill mid-write never leaves a
half-written file under the real name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import keras

from kdod.errors import KdodError

CHECKPOINT_DIR = "checkpoints"
DETECTOR_WEIGHTS = "detector.weights.h5"
_CHECKPOINT_RE = re.compile(r"ckpt-(\d+)\.weights\.h5$")


class CheckpointError(KdodError):
    """A checkpoint in model_dir cannot be used; the message says which and what to do."""


def checkpoint_paths(model_dir: str | Path) -> list[Path]:
    """Complete checkpoints in model_dir, oldest first."""
    folder = Path(model_dir) / CHECKPOINT_DIR
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt-*.weights.h5")
             if (m := _CHECKPOINT_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(model: keras.Model, model_dir: str | Path, step: int, keep: int = 3) -> Path:
    """Writes ckpt-<step>.weights.h5 (weights, optimizer state) atomically; keeps `keep`."""
    folder = Path(model_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = _save_atomically(model.save_weights, folder / f"ckpt-{step}.weights.h5")
    for old in checkpoint_paths(model_dir)[:-keep]:
        old.unlink()
    return path


def save_detector(detector: keras.Model, model_dir: str | Path) -> Path:
    """Writes the detector's network alone (no optimizer, no distillation adapters).

    Evaluation, export and distillation (as a teacher) load it with `load_detector`.
    """
    return _save_atomically(detector.network.save_weights, Path(model_dir) / DETECTOR_WEIGHTS)


def _save_atomically(save_weights: Callable[..., None], path: Path) -> Path:
    """Writes through a partial-* file renamed at the end: a kill mid-write leaves only that."""
    partial = path.with_name("partial-" + path.name)
    save_weights(partial, overwrite=True)
    os.replace(partial, path)
    return path


def load_detector(detector: keras.Model, model_dir: str | Path) -> keras.Model:
    """Loads model_dir's detector.weights.h5 into `detector` (built from the run's gin config)."""
    path = Path(model_dir) / DETECTOR_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"No trained detector in {model_dir} ({DETECTOR_WEIGHTS} is "
                              f"missing); train first: python -m kdod.train --gin_file=... "
                              f"--model_dir={model_dir}")
    try:
        detector.network.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py and keras raise many kinds here.
        raise CheckpointError(f"Cannot load {path} into the configured detector: {error}. Is "
                              f"the gin config the one it was trained with?") from None
    return detector


def restore_latest(model: keras.Model, model_dir: str | Path) -> int:
    """Loads the newest checkpoint into a built model; returns its step (0 if none)."""
    paths = checkpoint_paths(model_dir)
    if not paths:
        return 0
    optimizer = getattr(model, "optimizer", None)  # None when restoring for inference.
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    try:
        model.load_weights(paths[-1])
    except Exception as error:  # noqa: BLE001 - h5py and keras raise many kinds here.
        raise CheckpointError(
            f"Cannot restore checkpoint {paths[-1]}: {type(error).__name__}: {error}. It is "
            f"corrupt or from a different model configuration. Delete it to fall back to an "
            f"older one, or use a new --model_dir to start over.") from None
    return int(_CHECKPOINT_RE.search(paths[-1].name).group(1))
