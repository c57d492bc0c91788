"""Crop preparation: how a detected box becomes the image an OCR engine reads.

A margin around the detector's box (boxes are tight; a clipped glyph reads wrong), trimming of
uniform edges (padding, frame bars read as I or 1), upscaling of small crops (recognisers are
trained on text tens of pixels high), a contrast stretch, and the text bands of a crop for
engines without a line detector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import gin
import numpy as np
from PIL import Image, ImageOps


@gin.configurable(module="kdod.ocr")
@dataclasses.dataclass(frozen=True)
class CropPreparation:
    """How a detected box becomes the image an OCR engine reads.

    Attributes:
        margin: fraction of the box's width/height added on each side before cutting.
        trim: trim near-uniform rows/columns at the edges (at most this fraction per side).
        min_height: upscale crops lower than this many pixels (bicubic), at most 4x.
        contrast: stretch grey levels so 1% of pixels saturate at each end.
        pad: fraction of the height added on every side in the edges' median colour, so
            text detectors see glyphs that touched the crop's edge as whole.
    """

    margin: float = 0.08
    trim: float = 0.15
    min_height: int = 64
    contrast: bool = True
    pad: float = 0.15


def crop_box(image: np.ndarray, box: Sequence[float], margin: float = 0.0) -> np.ndarray:
    """Pixels of `box` (ymin, xmin, ymax, xmax, normalized to `image`) plus a relative margin."""
    height, width = image.shape[:2]
    ymin, xmin, ymax, xmax = np.asarray(box, np.float64) * [height, width, height, width]
    dy, dx = margin * (ymax - ymin), margin * (xmax - xmin)
    # At least one pixel, even for a degenerate box on the image's edge.
    top = int(np.clip(np.floor(ymin - dy), 0, height - 1))
    left = int(np.clip(np.floor(xmin - dx), 0, width - 1))
    bottom = int(np.clip(np.ceil(ymax + dy), top + 1, height))
    right = int(np.clip(np.ceil(xmax + dx), left + 1, width))
    return image[top:bottom, left:right]


def trim_uniform_edges(crop: np.ndarray, max_fraction: float, max_std: float = 12.0) -> np.ndarray:
    """Drops edge rows/columns whose grey levels barely vary (bars, padding, frame lines)."""
    grey = crop.mean(axis=2) if crop.ndim == 3 else crop.astype(np.float64)
    rows, columns = grey.std(axis=1) < max_std, grey.std(axis=0) < max_std
    top, bottom = _edge_run(rows, max_fraction), _edge_run(rows[::-1], max_fraction)
    left, right = _edge_run(columns, max_fraction), _edge_run(columns[::-1], max_fraction)
    return crop[top:crop.shape[0] - bottom, left:crop.shape[1] - right]


def _edge_run(uniform: np.ndarray, max_fraction: float) -> int:
    """Length of the run of True at the start of `uniform`, capped at a fraction of it."""
    limit = int(max_fraction * len(uniform))
    run = int(np.argmin(uniform)) if not uniform.all() else len(uniform)
    return min(run, limit)


def upscale(crop: np.ndarray, min_height: int, max_factor: float = 4.0) -> np.ndarray:
    """Bicubic upscaling so the crop is at least `min_height` pixels high."""
    if crop.shape[0] >= min_height:
        return crop
    factor = min(max_factor, min_height / crop.shape[0])
    size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BICUBIC))


def stretch_contrast(crop: np.ndarray) -> np.ndarray:
    return np.asarray(ImageOps.autocontrast(Image.fromarray(crop), cutoff=1))


def pad_with_edge_colour(crop: np.ndarray, fraction: float) -> np.ndarray:
    """Pads all sides by `fraction` of the height with the median colour of the edge pixels."""
    width = max(1, round(fraction * crop.shape[0]))
    edges = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    colour = np.median(edges, axis=0).astype(np.uint8)
    padded = np.empty((crop.shape[0] + 2 * width, crop.shape[1] + 2 * width, 3), np.uint8)
    padded[...] = colour
    padded[width:-width, width:-width] = crop
    return padded


def prepare_crop(crop: np.ndarray, preparation: CropPreparation = CropPreparation()) -> np.ndarray:
    """Trims, upscales, contrast-stretches and pads a crop (the margin was taken when cutting)."""
    crop = np.ascontiguousarray(np.asarray(crop, np.uint8)[..., :3])
    if preparation.trim > 0:
        crop = trim_uniform_edges(crop, preparation.trim)
    crop = upscale(crop, preparation.min_height)
    if preparation.contrast:
        crop = stretch_contrast(crop)
    if preparation.pad > 0:
        crop = pad_with_edge_colour(crop, preparation.pad)
    return np.ascontiguousarray(crop)


def cut_band(crop: np.ndarray, box: Sequence[float], margin: float = 0.2) -> np.ndarray:
    """The pixels of a text line's box (x0, y0, x1, y1) plus `margin` of its height all round."""
    x0, y0, x1, y1 = box
    pad = margin * (y1 - y0)
    top, left = int(max(0, y0 - pad)), int(max(0, x0 - pad))
    bottom, right = int(min(crop.shape[0], y1 + pad)), int(min(crop.shape[1], x1 + pad))
    return crop[top:max(bottom, top + 1), left:max(right, left + 1)]


def otsu_threshold(grey: np.ndarray) -> float:
    """The grey level that best splits the pixels into two classes (Otsu's method)."""
    histogram = np.bincount(np.clip(grey, 0, 255).astype(np.uint8).ravel(), minlength=256)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(histogram).astype(np.float64)
    mean = np.cumsum(histogram * levels)
    total, total_mean = weight[-1], mean[-1]
    between = (total_mean * weight - total * mean) ** 2 / np.maximum(weight * (total - weight), 1)
    return float(np.argmax(between))


def text_rows(crop: np.ndarray, min_fraction: float = 0.12, ink_share: float = 0.06
              ) -> list[tuple[float, float, float, float]]:
    """Boxes (x0, y0, x1, y1) of horizontal bands holding text, found without an OCR engine.

    Pixels are split into ink and plate by Otsu's threshold (ink is the minority, so dark text
    on light plates and light text on dark ones both work); rows where enough of the central
    columns are ink form bands, and bands lower than `min_fraction` of the crop (frame lines,
    bolts) are dropped. Engines without a layout step read each band as one line.
    """
    grey = crop.mean(axis=2) if crop.ndim == 3 else crop.astype(np.float64)
    height, width = grey.shape
    dark = grey < otsu_threshold(grey)
    ink = dark if dark.mean() < 0.5 else ~dark
    profile = ink[:, width // 20:width - width // 20].mean(axis=1)
    rows = np.flatnonzero(np.diff(np.concatenate([[0], profile > ink_share, [0]]).astype(int)))
    return [_ink_extent(ink[start:end], start, end) for start, end in zip(rows[::2], rows[1::2])
            if end - start >= min_fraction * height]


def _ink_extent(band_ink: np.ndarray, top: int, bottom: int) -> tuple[float, float, float, float]:
    """The band's box, narrowed to its ink; columns inked top to bottom (plate edges, frame
    bars, which single-line readers turn into I or 1) do not count as text."""
    share = band_ink.mean(axis=0)
    text_columns = np.flatnonzero((share > 0) & (share < 0.85))
    if text_columns.size == 0:
        return 0.0, float(top), float(band_ink.shape[1]), float(bottom)
    return float(text_columns[0]), float(top), float(text_columns[-1] + 1), float(bottom)
