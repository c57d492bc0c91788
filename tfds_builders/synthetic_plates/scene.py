"""Synthetic road scenes with licence plates, for training plate detectors and checking OCR.

Pure numpy + PIL (no TensorFlow). ``render_scene(seed, config)`` runs the stages in order with
``np.random.default_rng(seed)``, so a seed and a ``SceneConfig`` fully determine the scene:

1. ``placement.sample_plates``: registrations, styles, sizes, rotations, perspective and
   positions (non-overlapping, fully inside the image).
2. ``background.draw_background``: sky/road, buildings, poles, cars (one behind most plates),
   and ``clutter`` (distractor text, plate-like rectangles without a registration) kept off
   the plates.
3. ``placement.composite``: each plate drawn flat (``plates``), warped and alpha-blended.
4. ``effects.apply_effects``: lighting, blur, noise, JPEG round trip.

``SceneConfig`` is defined in ``config`` and can be imported from here as well.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfds_builders.synthetic_plates.background import draw_background
from tfds_builders.synthetic_plates.config import SceneConfig
from tfds_builders.synthetic_plates.effects import apply_effects
from tfds_builders.synthetic_plates.placement import composite, sample_plates

__all__ = ["DEFAULT_CONFIG", "Scene", "SceneConfig", "render_scene"]


@dataclasses.dataclass
class Scene:
    """A rendered scene: pixels, one box and one registration per plate."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    boxes: np.ndarray  # float32 [N, 4] normalized (ymin, xmin, ymax, xmax)
    texts: list[str]  # registrations: upper-case letters and digits only
    jpeg: bytes | None  # encoding whose decoding is exactly ``image``; None if jpeg is off


DEFAULT_CONFIG = SceneConfig()  # frozen, so one instance can serve as every call's default


def render_scene(seed: int, config: SceneConfig = DEFAULT_CONFIG) -> Scene:
    """Render one scene; the same (seed, config) always gives the same image and boxes."""
    rng = np.random.default_rng(seed)
    plates = sample_plates(rng, config)
    background = draw_background(rng, config, plates)
    image, boxes = composite(background, plates, config)
    image, encoded = apply_effects(rng, image, config)
    return Scene(image=image, boxes=boxes, texts=[p.registration for p in plates], jpeg=encoded)
