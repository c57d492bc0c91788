"""Random draws the stages share: one of a few options, a count in a range, a nearby colour.

Each is one fixed sequence of generator calls, so a stage that uses them stays reproducible
from the scene's seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One of ``options``, uniformly (an index draw, unlike ``rng.choice``, keeps tuples)."""
    return options[rng.integers(len(options))]


def count_between(rng: np.random.Generator, fewest_and_most: tuple[int, int]) -> int:
    """An integer from fewest to most, both included."""
    fewest, most = fewest_and_most
    return int(rng.integers(fewest, most + 1))


def jitter_colour(rng: np.random.Generator, colour, spread: float = 12) -> tuple[int, ...]:
    """``colour`` with Gaussian noise of ``spread`` levels on each channel, kept in 0..255."""
    return tuple(int(c) for c in np.clip(np.asarray(colour) + rng.normal(0, spread, 3), 0, 255))
