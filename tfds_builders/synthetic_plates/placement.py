"""Placement: the stage that decides each plate's content and where it lies, then pastes it.

``sample_plates`` picks registrations, styles, sizes (log-normal scale), rotations,
perspective and positions: non-overlapping, fully inside the image, by rejection sampling.
``composite`` draws each plate flat, warps it by its homography onto a plate-sized patch and
alpha-blends it; its box is the tight axis-aligned box of the warped plate quadrilateral.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tfds_builders.synthetic_plates.config import SceneConfig
from tfds_builders.synthetic_plates.lettering import Box
from tfds_builders.synthetic_plates.plates import (
    PLATE_STYLES,
    REGISTRATION_FONTS,
    PlateSpec,
    PlateStyle,
    plate_pixels,
    random_registration,
)
from tfds_builders.synthetic_plates.sampling import pick


def sample_plate_scale(rng: np.random.Generator, config: SceneConfig) -> float:
    """sqrt(plate area / image area), log-normal truncated to ``config.scale_range``."""
    low, high = config.scale_range
    for _ in range(100):
        scale = config.scale_median * np.exp(config.scale_sigma * rng.standard_normal())
        if low <= scale <= high:
            return float(scale)
    return float(np.clip(scale, low, high))


def sample_rotation(rng: np.random.Generator, config: SceneConfig) -> float:
    """Radians; mostly a few degrees, sometimes up to the maximum."""
    if not config.rotation:
        return 0.0
    limit = config.max_rotation_deg
    degrees = (rng.uniform(-limit, limit) if rng.random() < config.wide_rotation_probability
               else rng.normal(0, limit / 4))
    return float(np.deg2rad(np.clip(degrees, -limit, limit)))


def plate_quad(rng: np.random.Generator, config: SceneConfig, w: int, h: int) -> np.ndarray:
    """Corners of the plate centred on the origin after rotation and perspective jitter."""
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=np.float64) / 2
    angle = sample_rotation(rng, config)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rotation.T
    if config.perspective:
        corners += rng.normal(0, rng.uniform(0, config.max_corner_jitter) * h, size=(4, 2))
        skew = rng.uniform(-config.max_skew, config.max_skew)
        corners[:, 1] *= 1 + skew * np.array([-1, 1, 1, -1])  # yaw-like skew
    return corners


def plate_size(rng: np.random.Generator, config: SceneConfig,
               style: PlateStyle) -> tuple[int, int]:
    """Width and height in pixels of a flat plate of ``style``."""
    scale = sample_plate_scale(rng, config)
    aspect = style.aspect * np.exp(config.aspect_jitter * rng.standard_normal())
    area = scale**2 * config.height * config.width
    height = np.sqrt(area / aspect)
    width = min(height * aspect, 0.9 * config.width)  # keep room for rotation
    height = min(width / aspect, 0.9 * config.height)
    return max(3, round(width)), max(2, round(height))


def boxes_overlap(a: Box, b: Box, margin: float) -> bool:
    """Whether two (x0, y0, x1, y1) boxes come closer than ``margin`` pixels."""
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def sample_plates(rng: np.random.Generator, config: SceneConfig) -> list[PlateSpec]:
    """Plates placed fully inside the image and apart from each other (rejection sampling)."""
    styles = [s for s in PLATE_STYLES if s.name in config.styles]
    words = config.plate_words
    count = int(rng.integers(config.min_plates, config.max_plates + 1))
    plates: list[PlateSpec] = []
    for _ in range(count):
        style = pick(rng, styles)
        text = random_registration(rng, pick(rng, config.plate_formats))
        font = pick(rng, REGISTRATION_FONTS)
        header = pick(rng, words.us_headers if style.us_header else words.eu_country_codes)
        footer = pick(rng, words.us_footers)
        on_car = bool(rng.random() < config.on_car_probability)
        for _attempt in range(20):
            w, h = plate_size(rng, config, style)
            quad = plate_quad(rng, config, w, h)
            extent = quad.max(axis=0) - quad.min(axis=0)
            if extent[0] >= config.width - 1 or extent[1] >= config.height - 1:
                continue
            offset = rng.uniform([0, 0], [config.width, config.height] - extent) - quad.min(axis=0)
            spec = PlateSpec(text, style, font, w, h, quad + offset, on_car, header, footer)
            if not any(boxes_overlap(spec.box_xyxy, p.box_xyxy, 2) for p in plates):
                plates.append(spec)
                break
    return plates


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 8 coefficients of the projective map sending each ``src`` point to ``dst``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return np.linalg.solve(np.array(rows), np.array(rhs))


def warp_plate(plate: Image.Image, spec: PlateSpec) -> tuple[Image.Image, int, int]:
    """Warp the flat (padded) plate onto its quad; returns the patch and its top-left corner."""
    x0, y0 = np.floor(spec.quad.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(spec.quad.max(axis=0)).astype(int) + 1
    flat = np.array([[1, 1], [spec.width + 1, 1], [spec.width + 1, spec.height + 1],
                     [1, spec.height + 1]], dtype=np.float64)
    # PIL wants the map from output (patch) coordinates back to input (plate) coordinates.
    coeffs = homography(spec.quad - [x0, y0], flat)
    patch = plate.transform((int(x1 - x0), int(y1 - y0)), Image.Transform.PERSPECTIVE,
                            tuple(coeffs), resample=Image.Resampling.BILINEAR)
    return patch, int(x0), int(y0)


def composite(background: np.ndarray, plates: list[PlateSpec],
              config: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """Blend the plates onto the background; returns the image and normalized boxes."""
    image = background.copy()
    height, width = image.shape[:2]
    for spec in plates:
        patch, x0, y0 = warp_plate(plate_pixels(spec, config.plate_decorations), spec)
        _alpha_blend(image, np.asarray(patch), x0, y0)
    boxes = [[y0 / height, x0 / width, y1 / height, x1 / width]
             for x0, y0, x1, y1 in (spec.box_xyxy for spec in plates)]
    return image, np.clip(np.array(boxes, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)


def _alpha_blend(image: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
    """In place; clips the patch to the image."""
    height, width = image.shape[:2]
    top, left = max(0, y0), max(0, x0)
    bottom, right = min(height, y0 + rgba.shape[0]), min(width, x0 + rgba.shape[1])
    if bottom <= top or right <= left:
        return
    patch = rgba[top - y0:bottom - y0, left - x0:right - x0].astype(np.float32)
    alpha = patch[..., 3:] / 255.0
    region = image[top:bottom, left:right].astype(np.float32)
    image[top:bottom, left:right] = np.rint(region + alpha * (patch[..., :3] - region)).astype(
        np.uint8)
