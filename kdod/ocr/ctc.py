"""CTC over the plate alphabet: labels for training and greedy decoding of a recognizer's frames.

Class 0 is CTC's blank (Keras's `keras.losses.ctc` masks label 0 and uses it as the blank);
classes 1..36 are A-Z0-9. Greedy decoding takes each frame's best class, merges runs of one
class, then drops blanks: a character repeated on the plate needs a blank between its two
runs, so ``A A - A C`` reads ``AAC`` and ``A - A - A C`` reads ``AAAC``.
"""

from __future__ import annotations

import numpy as np

from kdod.errors import KdodError
from kdod.ocr.plate_text import ALPHANUMERIC

BLANK = 0
ALPHABET = ALPHANUMERIC  # class i + 1 is ALPHABET[i]
NUM_CLASSES = len(ALPHABET) + 1
MAX_LABEL_LENGTH = 10  # the longest registration a label holds (base.MAX_LENGTH)
_INDEX = {char: i + 1 for i, char in enumerate(ALPHABET)}


class LabelError(KdodError):
    """A plate text that cannot be a CTC label (characters outside A-Z0-9, or too long)."""


def encode(text: str, length: int = MAX_LABEL_LENGTH) -> np.ndarray:
    """int32 [length] class ids of `text` (A-Z0-9), padded with the blank 0."""
    unknown = sorted({char for char in text if char not in _INDEX})
    if unknown:
        raise LabelError(f"{text!r} has characters outside A-Z0-9: {''.join(unknown)!r}.")
    if len(text) > length:
        raise LabelError(f"{text!r} is longer than {length} characters.")
    label = np.zeros(length, np.int32)
    label[:len(text)] = [_INDEX[char] for char in text]
    return label


def decode(label: np.ndarray) -> str:
    """The text of a label from `encode` (blanks dropped)."""
    return "".join(ALPHABET[i - 1] for i in np.asarray(label).ravel() if i != BLANK)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def character_runs(probabilities: np.ndarray, blank: int = BLANK) -> list[tuple[int, int]]:
    """(peak frame, class) of each character greedy decoding reads from frames [T, classes]:
    each frame's best class, runs of one class merged, blanks dropped."""
    runs: list[tuple[int, int]] = []
    previous = blank
    for frame, index in enumerate(np.asarray(probabilities).argmax(axis=-1)):
        if index != blank and index != previous:
            runs.append((frame, int(index)))
        elif (index != blank and runs  # the same run continues: keep its highest peak
              and probabilities[frame, index] > probabilities[runs[-1][0], index]):
            runs[-1] = (frame, int(index))
        previous = index
    return runs


def greedy_decode(logits: np.ndarray) -> tuple[str, float]:
    """The text of one crop's frames, logits [T, NUM_CLASSES], and a score in [0, 1].

    The score is the lowest peak probability among the characters read (0 when none): one
    doubtful character makes the whole plate doubtful.
    """
    probabilities = softmax(np.asarray(logits, np.float64))
    runs = character_runs(probabilities)
    text = "".join(ALPHABET[index - 1] for _, index in runs)
    return text, float(min(probabilities[frame, index] for frame, index in runs)) if runs else 0.0
