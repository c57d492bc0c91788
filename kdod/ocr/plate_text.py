"""Plate text: normalisation, plate formats per region, look-alike correction.

Normalisation keeps upper-case letters and digits. Formats are written with ``L`` (letter),
``D`` (digit) and ``*`` (either); where a format says which kind belongs at a position, the
characters OCR confuses (O/0, I/1, B/8, S/5, Z/2, G/6) are corrected.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

# Region -> registration patterns. Open to extension: add a region or pass patterns directly.
PLATE_FORMATS: dict[str, tuple[str, ...]] = {
    # tfds_builders.synthetic_plates.config.DEFAULT_PLATE_FORMATS with separators removed.
    "synthetic": ("LLDDLLL", "LLLDDDD", "LLDDDLL", "DLLLDDD"),
    "uk": ("LLDDLLL",),
    "ru": ("LDDDLLDD", "LDDDLLDDD"),
    "in": ("LLDDLLDDDD", "LLDDLDDDD"),
    # US states mix many layouts; these are the common ones (CA, TX, NY, FL, ...).
    "us": ("DLLLDDD", "LLLDDDD", "LLLDDD", "DDDLLL", "LLDDDDD", "DLLDDD", "LLLLDDD"),
}

TO_LETTER = {"0": "O", "1": "I", "8": "B", "5": "S", "2": "Z", "6": "G"}
TO_DIGIT = {letter: digit for digit, letter in TO_LETTER.items()}
MAX_EXTRA_CHARACTERS = 2  # a frame bolt or sticker read next to the registration


def normalize_text(text: str) -> str:
    """Upper case, letters A-Z and digits only (spaces, dashes and punctuation dropped)."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def resolve_formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    """Patterns from a region name ('us', or 'us+uk'), a list of patterns, or None (no format)."""
    if formats is None:
        return ()
    if isinstance(formats, str):
        patterns: list[str] = []
        for region in formats.split("+"):
            if region not in PLATE_FORMATS:
                raise ValueError(f"Unknown plate format region {region!r}; known: "
                                 f"{', '.join(sorted(PLATE_FORMATS))} (or give the patterns).")
            patterns.extend(PLATE_FORMATS[region])
        return tuple(patterns)
    bad = [p for p in formats if not re.fullmatch(r"[LD*]+", p)]
    if bad:
        raise ValueError(f"Plate formats use L (letter), D (digit) and * (either); got {bad}.")
    return tuple(formats)


def conform(text: str, pattern: str) -> tuple[str, int] | None:
    """`text` (normalized, same length as `pattern`) fitted to it: (text, substitutions), or None.

    A digit where the pattern wants a letter becomes its look-alike letter and vice versa;
    a character with no look-alike of the wanted kind means the text does not fit.
    """
    if len(text) != len(pattern):
        return None
    fitted, changes = [], 0
    for char, kind in zip(text, pattern):
        if kind == "L" and char.isdigit():
            char, changes = TO_LETTER.get(char, ""), changes + 1
        elif kind == "D" and char.isalpha():
            char, changes = TO_DIGIT.get(char, ""), changes + 1
        if not char:
            return None
        fitted.append(char)
    return "".join(fitted), changes


def apply_formats(text: str, patterns: Sequence[str]) -> tuple[str, int | None]:
    """The closest reading of `text` that fits one of `patterns`, and its cost (None: no fit).

    Cost counts substituted characters plus characters dropped from the ends (at most
    MAX_EXTRA_CHARACTERS); the lowest cost wins, so a text already in format is kept as is.
    """
    text = normalize_text(text)
    best: tuple[int, str] | None = None
    for pattern in patterns:
        extra = len(text) - len(pattern)
        if not 0 <= extra <= MAX_EXTRA_CHARACTERS:
            continue
        for start in range(extra + 1):
            fitted = conform(text[start:start + len(pattern)], pattern)
            if fitted is not None and (best is None or fitted[1] + extra < best[0]):
                best = (fitted[1] + extra, fitted[0])
    return (text, None) if best is None else (best[1], best[0])
