"""Clutter: the stage that adds what a detector could take for a plate, off the real plates.

Hard negatives (plate-shaped rectangles without a registration: blanks, frames, dealer
stickers) and distractor text (signs, badges, words, registrations without a plate), each put
where it overlaps no plate and no earlier clutter, so every pixel a plate does not cover is
background. Words, formats and counts come from ``SceneConfig.street``.
"""

from __future__ import annotations

import numpy as np
from PIL import ImageDraw

from tfds_builders.synthetic_plates.config import SceneConfig
from tfds_builders.synthetic_plates.lettering import Box, draw_text_line, load_font
from tfds_builders.synthetic_plates.placement import boxes_overlap, plate_size
from tfds_builders.synthetic_plates.plates import (
    PLATE_STYLES,
    PlateSpec,
    frame_size,
    random_registration,
)
from tfds_builders.synthetic_plates.sampling import count_between, jitter_colour, pick

CLUTTER_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
)


def _free_box(rng: np.random.Generator, width: int, height: int, box_w: float, box_h: float,
              avoid: list[Box]) -> Box | None:
    """A box of the given size inside the image that overlaps none of ``avoid``, or None."""
    if box_w >= width or box_h >= height:
        return None
    for _ in range(10):
        x, y = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
        box = (x, y, x + box_w, y + box_h)
        if not any(boxes_overlap(box, other, 3) for other in avoid):
            return box
    return None


def _draw_hard_negatives(draw: ImageDraw.ImageDraw, rng: np.random.Generator,
                         config: SceneConfig, avoid: list[Box]) -> None:
    """Plate-shaped rectangles without a registration: blanks, frames, dealer stickers."""
    for _ in range(count_between(rng, config.street.hard_negatives)):
        style = pick(rng, PLATE_STYLES)
        w, h = plate_size(rng, config, style)
        box = _free_box(rng, config.width, config.height, w, h, avoid)
        if box is None:
            continue
        radius, border = frame_size(h)
        draw.rounded_rectangle(box, radius=radius, fill=style.background, outline=style.border,
                               width=border)
        if rng.random() < 0.5:
            word = pick(rng, config.street.clutter_words)
            inner = (box[0] + 0.2 * w, box[1] + 0.35 * h, box[2] - 0.2 * w, box[3] - 0.35 * h)
            draw_text_line(draw, inner, word, pick(rng, CLUTTER_FONTS), style.ink)
        avoid.append(box)


def _draw_distractor_text(draw: ImageDraw.ImageDraw, rng: np.random.Generator,
                          config: SceneConfig, avoid: list[Box]) -> None:
    """Words and numbers that are not plates: signs, badges, registrations without a frame."""
    street, height, width = config.street, config.height, config.width
    for _ in range(count_between(rng, street.distractor_texts)):
        if rng.random() < street.registration_distractor_probability:
            text = random_registration(rng, pick(rng, street.distractor_formats))
        else:
            text = pick(rng, street.clutter_words)
        font = load_font(pick(rng, CLUTTER_FONTS), rng.uniform(0.025, 0.09) * height)
        left, top, right, bottom = font.getbbox(text)
        box = _free_box(rng, width, height, right - left, bottom - top, avoid)
        if box is None:
            continue
        if rng.random() < 0.4:  # on a sign
            draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3),
                           fill=jitter_colour(rng, (30, 90, 160) if rng.random() < 0.5
                                              else (240, 240, 235), 20))
        ink = (255, 255, 255) if rng.random() < 0.4 else jitter_colour(rng, (30, 30, 30), 25)
        draw.text((box[0] - left, box[1] - top), text, font=font, fill=ink)


def draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, config: SceneConfig,
                 plates: list[PlateSpec]) -> None:
    """Hard negatives, then distractor text, none of it on a plate or on earlier clutter."""
    avoid = [spec.box_xyxy for spec in plates]
    _draw_hard_negatives(draw, rng, config, avoid)
    _draw_distractor_text(draw, rng, config, avoid)
