"""Background: the stage that paints the street a scene's plates are pasted onto.

Sky and road, buildings, lane markings, poles and wires, cars (one behind each plate that rides
on one, others without a visible plate), then the ``clutter`` stage when it is switched on, and
a faint texture so that flat areas are not perfectly flat. Palettes and counts come from
``SceneConfig.street``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tfds_builders.synthetic_plates.clutter import draw_clutter
from tfds_builders.synthetic_plates.config import SceneConfig, StreetConfig
from tfds_builders.synthetic_plates.lettering import Box
from tfds_builders.synthetic_plates.plates import PlateSpec
from tfds_builders.synthetic_plates.sampling import count_between, jitter_colour, pick


def _vertical_gradient(top, bottom, rows: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(column, (rows, width, 3))


def _sky_and_ground(rng: np.random.Generator, street: StreetConfig, height: int,
                    width: int) -> np.ndarray:
    horizon = int(rng.uniform(0.2, 0.6) * height)
    clear, overcast = street.sky_colours
    sky_top = jitter_colour(rng, clear if rng.random() < street.clear_sky_probability
                            else overcast, 20)
    sky_low = jitter_colour(rng, (215, 220, 228), 15)
    road = rng.uniform(70, 150)
    ground_top = jitter_colour(rng, (road + 15,) * 3, 8)
    ground_low = jitter_colour(rng, (road - 25,) * 3, 8)
    image = np.concatenate([_vertical_gradient(sky_top, sky_low, horizon, width),
                            _vertical_gradient(ground_top, ground_low, height - horizon, width)])
    return image.astype(np.uint8)


def _draw_buildings(draw: ImageDraw.ImageDraw, rng: np.random.Generator, street: StreetConfig,
                    height: int, width: int) -> None:
    x = rng.uniform(-0.1, 0.1) * width
    while x < width:
        w = rng.uniform(0.12, 0.4) * width
        top, bottom = rng.uniform(0.0, 0.35) * height, rng.uniform(0.4, 0.7) * height
        # rng.choice, not pick: changing how the generator is called would change every scene.
        wall = jitter_colour(rng, rng.choice(street.wall_colours), 20)
        draw.rectangle((x, top, x + w, bottom), fill=wall)
        step = rng.uniform(0.04, 0.08) * width
        glass = jitter_colour(rng, (60, 75, 95), 15)
        for wy in np.arange(top + step / 2, bottom - step, step):
            for wx in np.arange(x + step / 3, x + w - step / 2, step):
                draw.rectangle((wx, wy, wx + step * 0.55, wy + step * 0.6), fill=glass)
        x += w + rng.uniform(0, 0.1) * width


def _draw_street_furniture(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int,
                           width: int) -> None:
    """Lane markings converging to a vanishing point, poles and overhead wires."""
    vanish_x, vanish_y = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.55) * height
    paint = (235, 235, 230) if rng.random() < 0.7 else (230, 190, 40)
    for foot in rng.uniform(-0.5, 1.5, size=int(rng.integers(1, 4))) * width:
        for t0 in np.arange(0.15, 1.0, 0.2):
            t1 = t0 + 0.1
            xa, ya = vanish_x + t0 * (foot - vanish_x), vanish_y + t0 * (height - vanish_y)
            xb, yb = vanish_x + t1 * (foot - vanish_x), vanish_y + t1 * (height - vanish_y)
            draw.polygon([(xa - 0.01 * width * t0, ya), (xa + 0.01 * width * t0, ya),
                          (xb + 0.01 * width * t1, yb), (xb - 0.01 * width * t1, yb)],
                         fill=paint)
    for _ in range(int(rng.integers(0, 4))):
        x, w = rng.uniform(0, width), rng.uniform(0.005, 0.02) * width
        draw.rectangle((x, rng.uniform(0, 0.4) * height, x + w, rng.uniform(0.6, 1.0) * height),
                       fill=jitter_colour(rng, (90, 90, 90), 25))
    for _ in range(int(rng.integers(0, 3))):
        draw.line((0, rng.uniform(0, 0.3) * height, width, rng.uniform(0, 0.3) * height),
                  fill=(40, 40, 40), width=1)


def _draw_car(draw: ImageDraw.ImageDraw, rng: np.random.Generator, street: StreetConfig,
              body: Box) -> None:
    """A car seen from behind or in front: body, window, lights, bumper and wheels."""
    x0, y0, x1, y1 = body
    w, h = x1 - x0, y1 - y0
    colour = jitter_colour(rng, pick(rng, street.car_colours), 10)
    dark = tuple(int(c * 0.45) for c in colour)
    for wx in (x0 + 0.04 * w, x1 - 0.2 * w):  # wheels peeking below the body
        draw.rectangle((wx, y1 - 0.1 * h, wx + 0.16 * w, y1 + 0.12 * h), fill=(20, 20, 22))
    roof = y0 - rng.uniform(0.5, 0.8) * h
    inset = rng.uniform(0.1, 0.2) * w
    draw.polygon([(x0 + inset, roof), (x1 - inset, roof), (x1 - 0.03 * w, y0 + 0.02 * h),
                  (x0 + 0.03 * w, y0 + 0.02 * h)], fill=colour)
    glass = jitter_colour(rng, (45, 55, 70), 15)
    draw.polygon([(x0 + inset + 0.04 * w, roof + 0.1 * h), (x1 - inset - 0.04 * w, roof + 0.1 * h),
                  (x1 - 0.09 * w, y0 - 0.02 * h), (x0 + 0.09 * w, y0 - 0.02 * h)], fill=glass)
    draw.rounded_rectangle(body, radius=max(1, int(0.12 * h)), fill=colour)
    light = (200, 30, 30) if rng.random() < 0.6 else (235, 225, 190)
    for lx in (x0 + 0.04 * w, x1 - 0.19 * w):
        draw.rectangle((lx, y0 + 0.15 * h, lx + 0.15 * w, y0 + 0.38 * h), fill=light)
    draw.rectangle((x0, y1 - 0.22 * h, x1, y1 - 0.05 * h), fill=dark)  # bumper


def _car_around(rng: np.random.Generator, spec: PlateSpec) -> Box:
    """A car body box that holds the plate in its lower middle."""
    x0, y0, x1, y1 = spec.box_xyxy
    body_w = (x1 - x0) * rng.uniform(2.6, 4.0) * spec.style.aspect / 4.5
    body_w = max(body_w, (x1 - x0) * 1.6)
    body_h = body_w * rng.uniform(0.35, 0.5)
    cx = (x0 + x1) / 2 + rng.uniform(-0.05, 0.05) * body_w
    top = (y0 + y1) / 2 - rng.uniform(0.5, 0.72) * body_h
    return cx - body_w / 2, top, cx + body_w / 2, top + body_h


def _draw_cars(draw: ImageDraw.ImageDraw, rng: np.random.Generator, config: SceneConfig,
               plates: list[PlateSpec]) -> None:
    """Cars without a visible plate first, then one behind each plate that rides on a car."""
    height, width = config.height, config.width
    for _ in range(count_between(rng, config.street.cars_without_plate)):
        body_w = rng.uniform(0.2, 0.6) * width
        x, y = rng.uniform(-0.2, 0.9) * width, rng.uniform(0.3, 0.9) * height
        _draw_car(draw, rng, config.street,
                  (x, y, x + body_w, y + body_w * rng.uniform(0.35, 0.5)))
    for spec in plates:
        if spec.on_car:
            _draw_car(draw, rng, config.street, _car_around(rng, spec))


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth low-frequency noise (+-~10 levels) so flat areas are not perfectly flat."""
    coarse = rng.normal(0, 6, size=(max(2, height // 16), max(2, width // 16))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height),
                                                       Image.Resampling.BILINEAR))
    fine = rng.normal(0, 3, size=(max(2, height // 2), max(2, width // 2))).astype(np.float32)
    fine = np.asarray(Image.fromarray(fine).resize((width, height), Image.Resampling.NEAREST))
    return (smooth + fine)[..., None]


def draw_background(rng: np.random.Generator, config: SceneConfig,
                    plates: list[PlateSpec]) -> np.ndarray:
    """A road-photo-like scene with cars behind the plates that ride on one; uint8 RGB.

    Clutter stays off the plates' boxes so every pixel a plate does not cover is background.
    """
    height, width = config.height, config.width
    canvas = Image.fromarray(_sky_and_ground(rng, config.street, height, width))
    draw = ImageDraw.Draw(canvas)
    _draw_buildings(draw, rng, config.street, height, width)
    _draw_street_furniture(draw, rng, height, width)
    _draw_cars(draw, rng, config, plates)
    if config.clutter:
        draw_clutter(draw, rng, config, plates)
    image = np.asarray(canvas, dtype=np.float32) + _texture(rng, height, width)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
