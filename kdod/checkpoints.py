"""A run's files on disk: checkpoints (weights + optimizer state + step) and the detector alone.

    model_dir/checkpoints/ckpt-<step>.weights.h5   resumable training state, the last few kept
    model_dir/detector.weights.h5                  the detector's network alone (no optimizer,
                                                   no distillation adapters): evaluation,
                                                   export and teachers load it
    model_dir/recognizer.weights.h5                kdod.train_ocr's plate recognizer alone

Both are written to a ``partial-*`` file first and renamed, so a kill mid-write never leaves a
half-written file under the real name; `train` removes leftover ``partial-*`` files at its start.
Beside each file, ``<file>.sha256`` holds its SHA-256 (the format of ``sha256sum``, so
``sha256sum -c`` checks it too); loading verifies it, so bytes damaged later (a disk, a copy)
are an error naming the file, not weights loaded silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import keras
from absl import logging

from kdod.errors import KdodError
from kdod.files import write_json

CHECKPOINT_DIR = "checkpoints"
# Wall seconds of training up to each checkpoint's step, summed over the sittings of a run.
TRAINING_TIME = "training_seconds.json"
DETECTOR_WEIGHTS = "detector.weights.h5"
RECOGNIZER_WEIGHTS = "recognizer.weights.h5"
_CHECKPOINT_RE = re.compile(r"ckpt-(\d+)\.weights\.h5$")
PARTIAL_PREFIX = "partial-"
CHECKSUM_SUFFIX = ".sha256"


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
        checksum_path(old).unlink(missing_ok=True)
    return path


def record_training_seconds(model_dir: str | Path, step: int, seconds: float) -> None:
    """Records that the run's training took `seconds` of wall time up to `step`."""
    recorded = _recorded_seconds(model_dir) | {step: seconds}
    write_json(Path(model_dir) / TRAINING_TIME, recorded)  # json writes the int keys as strings


def training_seconds(model_dir: str | Path, step: int | None = None) -> float | None:
    """Wall seconds of training up to `step` (default: the last recorded step), over all the
    sittings of the run (a resumed run goes on from its checkpoint's time); None if the run
    recorded none for that step."""
    recorded = _recorded_seconds(model_dir)
    return recorded.get(max(recorded, default=None) if step is None else step)


def _recorded_seconds(model_dir: str | Path) -> dict[int, float]:
    path = Path(model_dir) / TRAINING_TIME
    return ({int(key): value for key, value in json.loads(path.read_text()).items()}
            if path.is_file() else {})


def save_detector(detector: keras.Model, model_dir: str | Path) -> Path:
    """Writes the detector's network alone (no optimizer, no distillation adapters).

    Evaluation, export and distillation (as a teacher) load it with `load_detector`.
    """
    return save_weights_file(detector.network, model_dir, DETECTOR_WEIGHTS)


def save_weights_file(network: keras.Model, model_dir: str | Path, name: str) -> Path:
    """Writes a network's weights alone to model_dir/name (atomically, with its checksum)."""
    return _save_atomically(network.save_weights, Path(model_dir) / name)


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of a weights file is written: beside it, ``<name>.sha256``."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def remove_partial_files(model_dir: str | Path) -> None:
    """Deletes the partial-* files of saves killed mid-write (the files they replace are whole)."""
    folder = Path(model_dir)
    for partial in [*folder.glob(PARTIAL_PREFIX + "*"),
                    *(folder / CHECKPOINT_DIR).glob(PARTIAL_PREFIX + "*")]:
        logging.info("Removing %s, left by a save that was interrupted.", partial)
        partial.unlink()


def _save_atomically(save_weights: Callable[..., None], path: Path) -> Path:
    """Writes through a partial-* file renamed at the end, then its checksum the same way.

    The old checksum goes first: a kill between the renames leaves a file without a checksum
    (loaded with a warning), never a whole file beside the checksum of another.
    """
    partial = path.with_name(PARTIAL_PREFIX + path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(partial, overwrite=True)
    digest = _sha256(partial)
    checksum = checksum_path(path)
    checksum.unlink(missing_ok=True)
    os.replace(partial, path)
    partial_checksum = checksum.with_name(PARTIAL_PREFIX + checksum.name)
    partial_checksum.write_text(f"{digest}  {path.name}\n")
    os.replace(partial_checksum, checksum)
    return path


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _intact(path: Path) -> bool:
    """False when `path` differs from the checksum beside it. True when they match, or, with a
    warning, when there is no checksum: older versions of kdod wrote none."""
    checksum = checksum_path(path)
    if not checksum.is_file():
        logging.warning("%s has no checksum file %s (written by an older kdod?): it is loaded "
                        "unverified.", path, checksum.name)
        return True
    recorded = checksum.read_text().split()
    return bool(recorded) and recorded[0] == _sha256(path)


def _damaged(path: Path) -> str:
    return f"{path} does not match its checksum in {checksum_path(path).name}: the file is damaged."


def load_detector(detector: keras.Model, model_dir: str | Path) -> keras.Model:
    """Loads model_dir's detector.weights.h5 into `detector` (built from the run's gin config)."""
    load_weights_file(detector.network, model_dir, DETECTOR_WEIGHTS, "detector",
                      f"python -m kdod.train --gin_file=... --model_dir={model_dir}")
    return detector


def load_weights_file(network: keras.Model, model_dir: str | Path, name: str, what: str,
                      train_command: str) -> keras.Model:
    """Loads model_dir/name (written by `save_weights_file`) into `network`, checksum verified;
    `what` names the network and `train_command` rewrites the file in the errors."""
    path = Path(model_dir) / name
    if not path.is_file():
        raise CheckpointError(f"No trained {what} in {model_dir} ({name} is "
                              f"missing); train first: {train_command}")
    if not _intact(path):
        raise CheckpointError(f"{_damaged(path)} Run the run's training command again "
                              f"({train_command}): it writes the {what}'s weights anew from "
                              "the last checkpoint.")
    try:
        network.load_weights(path)
    except Exception as error:  # noqa: BLE001 - h5py and keras raise many kinds here.
        raise CheckpointError(f"Cannot load {path} into the configured {what}: {error}. Is "
                              f"the gin config the one it was trained with?") from None
    return network


def restore_latest(model: keras.Model, model_dir: str | Path) -> int:
    """Loads the newest checkpoint into a built model; returns its step (0 if none)."""
    paths = checkpoint_paths(model_dir)
    if not paths:
        return 0
    latest = paths[-1]
    if not _intact(latest):
        raise CheckpointError(f"Cannot restore checkpoint {_damaged(latest)} "
                              f"{_fallback(latest, paths[:-1])}")
    optimizer = getattr(model, "optimizer", None)  # None when restoring for inference.
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    try:
        model.load_weights(latest)
    except Exception as error:  # noqa: BLE001 - h5py and keras raise many kinds here.
        raise CheckpointError(
            f"Cannot restore checkpoint {latest}: {type(error).__name__}: {error}. It is "
            f"corrupt or from a different model configuration. "
            f"{_fallback(latest, paths[:-1])}") from None
    return int(_CHECKPOINT_RE.search(latest.name).group(1))


def _fallback(bad: Path, older: list[Path]) -> str:
    """What to do about a checkpoint that cannot be restored: the newest intact older one."""
    good = next((path for path in reversed(older) if _intact(path)), None)
    start_over = "use a new --model_dir to start over"
    if good is None:
        return f"There is no older intact checkpoint: {start_over}."
    return (f"The previous good checkpoint is {good.name}: delete {bad.name} and "
            f"{checksum_path(bad).name} to resume from it, or {start_over}.")
