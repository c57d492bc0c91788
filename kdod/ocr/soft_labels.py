"""Per-character soft labels: a teacher engine's character probabilities, distilled into plate_ctc.

    teacher = anpr.build_ocr("rapidocr")
    write_soft_labels("runs/pseudo_real", teacher)      # beside its labels.csv
    # then train_ocr.soft_labels = "runs/pseudo_real/soft_labels.npz"

A pseudo-label (`pseudo_labels`) says which characters a crop holds; a teacher that exposes its
CTC frames (RapidOCR's recogniser) also says how sure it was of each, and what else each could
be (0 or D, 8 or B). `project` maps a teacher's frames onto the recognizer's alphabet: each
character greedy decoding reads (`ctc.character_runs`), with its peak frame's distribution over
A-Z0-9 (the teacher's classes summed the way labels write them: upper case, O as 0;
separators and other characters dropped). Where the kept label is a run of the teacher's
reading of a row of the crop, those characters' distributions are its soft labels.

In training (`soft_label_loss`) each labelled character is placed where the student's best CTC
alignment puts it (`aligned_frames`, Viterbi over the student's own frames: the teacher's frames
and the student's do not line up), and the student's distribution over A-Z0-9 there is pulled
to the teacher's by KL divergence, beside CTC on the hard label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging
from tqdm import tqdm

from kdod.errors import KdodError
from kdod.ocr import ctc
from kdod.ocr.crop_sets import load_crop, read_csv_rows
from kdod.ocr.pseudo_labels import label_text

SOFT_LABELS_FILE = "soft_labels.npz"
CLASSES = len(ctc.ALPHABET)  # the soft labels' classes: A-Z0-9, no blank
_INDEX = {char: i for i, char in enumerate(ctc.ALPHABET)}
Distributions = np.ndarray  # float32 [characters, CLASSES], rows summing to 1


class SoftLabelError(KdodError):
    """A soft-label file that cannot be used with the crops it is given with."""


def alphabet_classes(characters: Sequence[str]) -> np.ndarray:
    """The recognizer's class (0..CLASSES-1) of each teacher class, -1 for those it has no
    class for; the teacher's class 0 is its CTC blank."""
    return np.array([-1 if index == 0 else _INDEX.get(label_text(char), -1)
                     for index, char in enumerate(characters)], np.int64)


def project(frames: np.ndarray, classes: np.ndarray) -> tuple[str, Distributions]:
    """A teacher's reading of one line, frames [T, teacher classes] of probabilities, as the
    recognizer's text and each of its characters' distribution over A-Z0-9 (`classes`:
    `alphabet_classes`)."""
    known = classes >= 0
    text, rows = [], []
    for frame, index in ctc.character_runs(frames):
        if classes[index] < 0:  # a separator, or a character no plate label holds
            continue
        mass = np.bincount(classes[known], weights=frames[frame, known], minlength=CLASSES)
        text.append(ctc.ALPHABET[classes[index]])
        rows.append(mass / mass.sum())
    return "".join(text), np.asarray(rows, np.float32).reshape(-1, CLASSES)


def label_distributions(label: str, readings: Sequence[tuple[str, Distributions]]
                        ) -> Distributions | None:
    """The distributions of `label`'s characters in the first reading holding it as a run of
    characters, or None when no reading does."""
    for text, rows in readings:
        if (start := text.find(label)) >= 0:
            return rows[start:start + len(label)]
    return None


def write_soft_labels(folder: str | Path, teacher) -> dict:
    """folder/soft_labels.npz for the crops of folder/labels.csv (`pseudo_labels`' output):
    `files` (as labels.csv names them) and `probabilities` [N, ctc.MAX_LABEL_LENGTH, CLASSES]
    (rows past a label's end are 0). `teacher` has `character_readings(crop)` (the RapidOCR
    backend). Returns {"crops", "soft_labelled"}."""
    folder = Path(folder)
    rows = read_csv_rows(folder / "labels.csv")
    names, tables = [], []
    for path, text in tqdm(rows, desc="soft labels", unit="crop"):
        found = label_distributions(text, teacher.character_readings(load_crop(path)))
        if found is not None:
            table = np.zeros((ctc.MAX_LABEL_LENGTH, CLASSES), np.float32)
            table[:len(text)] = found
            names.append(path.relative_to(folder).as_posix())
            tables.append(table)
    probabilities = np.asarray(tables, np.float32).reshape(-1, ctc.MAX_LABEL_LENGTH, CLASSES)
    with open(folder / SOFT_LABELS_FILE, "wb") as file:
        np.savez(file, files=np.array(names, dtype=str), probabilities=probabilities)
    return {"crops": len(rows), "soft_labelled": len(names)}


def read_soft_labels(path: str | Path, rows: Sequence[tuple[Path, str]], csv_folder: Path
                     ) -> np.ndarray:
    """float32 [len(rows), ctc.MAX_LABEL_LENGTH, CLASSES]: the soft labels of a CSV's rows
    ((image path, text), `read_csv_rows`), 0 for rows the file has none for. A soft label
    whose most likely characters are not the row's text (the CSV was edited since) is left out
    and counted in a warning; a file matching no row is an error."""
    path = Path(path)
    if not path.is_file():
        raise SoftLabelError(f"No soft labels at {path}: python -m kdod.pseudo_label_ocr with "
                             "rapidocr among --engines writes them beside labels.csv.")
    with np.load(path) as stored:
        if {"files", "probabilities"} - set(stored.files):
            raise SoftLabelError(f"{path} holds {sorted(stored.files)}, not files and "
                                 "probabilities: it is not a soft-label file.")
        names, tables = list(stored["files"]), stored["probabilities"]
    if tables.shape[1:] != (ctc.MAX_LABEL_LENGTH, CLASSES) or len(tables) != len(names):
        raise SoftLabelError(f"{path}: probabilities of shape {tables.shape} for {len(names)} "
                             f"files; expected [{len(names)}, {ctc.MAX_LABEL_LENGTH}, "
                             f"{CLASSES}].")
    by_name = dict(zip(names, tables))
    soft = np.zeros((len(rows), ctc.MAX_LABEL_LENGTH, CLASSES), np.float32)
    matched, disagree = 0, []
    for position, (image, text) in enumerate(rows):
        table = by_name.get(Path(image).relative_to(csv_folder).as_posix())
        if table is None:
            continue
        if "".join(ctc.ALPHABET[i] for i in table[:len(text)].argmax(axis=1)) != text \
                or table[len(text):].any():
            disagree.append(f"{image.name} ({text})")
            continue
        soft[position], matched = table, matched + 1
    if disagree:
        logging.warning("%s: %d soft labels left out, their characters are not the CSV's "
                        "text: %s", path, len(disagree), ", ".join(disagree[:5]))
    if not matched:
        raise SoftLabelError(f"{path}: none of its {len(names)} soft labels belongs to a row "
                             f"of the crop CSV in {csv_folder} (its files are named relative "
                             "to the CSV's folder).")
    logging.info("%d of %d crops have soft labels (%s).", matched, len(rows), path)
    return soft


def aligned_frames(log_probs: np.ndarray, labels: np.ndarray, active: np.ndarray
                   ) -> np.ndarray:
    """int32 [B, L]: the frame of each label character in the best CTC alignment of labels
    [B, L] (class ids, 0-padded) to frames log_probs [B, T, classes] (the character's most
    likely frame among those the alignment gives it); -1 past a label's end, for crops not
    `active` [B] and where no alignment fits."""
    frames = np.full(labels.shape, -1, np.int32)
    for crop in np.flatnonzero(active):
        label = labels[crop][labels[crop] != ctc.BLANK]
        if len(label):
            frames[crop, :len(label)] = _best_path_frames(log_probs[crop], label)
    return frames


def _best_path_frames(log_probs: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Viterbi over CTC's states (blank, char, blank, ..., blank) for one crop."""
    steps, states = len(log_probs), 2 * len(label) + 1
    classes = np.zeros(states, np.int64)
    classes[1::2] = label
    may_skip = np.zeros(states, bool)  # a character state reached from the one two back
    may_skip[3::2] = label[1:] != label[:-1]  # (a repeat needs the blank between)
    score = np.full(states, -np.inf)
    score[:2] = log_probs[0, classes[:2]]
    back = np.zeros((steps, states), np.int64)
    for step in range(1, steps):
        moves = np.full((3, states), -np.inf)
        moves[0], moves[1, 1:] = score, score[:-1]
        moves[2, 2:] = np.where(may_skip[2:], score[:-2], -np.inf)
        back[step] = moves.argmax(axis=0)
        score = moves.max(axis=0) + log_probs[step, classes]
    state = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    if not np.isfinite(score[state]):
        return np.full(len(label), -1, np.int32)
    path = np.zeros(steps, np.int64)
    for step in range(steps - 1, -1, -1):
        path[step] = state
        state -= back[step, state]
    frames = np.full(len(label), -1, np.int32)
    for position, char in enumerate(label):
        own = np.flatnonzero(path == 2 * position + 1)
        frames[position] = own[log_probs[own, char].argmax()]
    return frames


def soft_label_loss(labels, soft, logits, temperature: float = 1.0):
    """Per crop: the sum over its labelled characters of KL(teacher || student), the student's
    distribution over A-Z0-9 (its blank left out) at the character's aligned frame; labels
    [B, L] class ids, soft [B, L, CLASSES] (all 0: no soft label), logits [B, T, NUM_CLASSES].
    At a `temperature` T above 1 both distributions are softened (the teacher's p^(1/T)
    renormalized, the student's logits over T) and the KL scaled by T^2 (Hinton et al.): a
    teacher sure of nearly every character says little at T = 1.
    The alignment is not differentiated: it says where, the KL teaches what."""
    import tensorflow as tf

    labels = tf.cast(labels, tf.int32)
    labelled = tf.reduce_sum(soft, axis=-1) > 0  # [B, L]
    frames = tf.numpy_function(aligned_frames, [tf.stop_gradient(tf.nn.log_softmax(logits)),
                                                labels, tf.reduce_any(labelled, axis=1)],
                               tf.int32, stateful=False)
    frames = tf.ensure_shape(frames, labels.shape)
    labelled &= frames >= 0
    at_frames = tf.gather(logits, tf.maximum(frames, 0), batch_dims=1)  # [B, L, classes]
    log_student = tf.nn.log_softmax(at_frames[..., 1:] / temperature)
    teacher = tf.pow(soft, 1.0 / temperature)
    teacher = tf.math.divide_no_nan(teacher, tf.reduce_sum(teacher, axis=-1, keepdims=True))
    divergence = tf.reduce_sum(tf.math.xlogy(teacher, teacher) - teacher * log_student, axis=-1)
    return temperature ** 2 * tf.reduce_sum(tf.where(labelled, divergence, 0.0), axis=1)
