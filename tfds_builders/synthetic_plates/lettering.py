"""Fonts and lettering: the stage every other one writes text with.

The DejaVu TrueType fonts come from the matplotlib wheel (found without importing matplotlib);
``draw_text_line`` fits a line of text into a box so that its capitals fill the box's height,
as a plate's registration or a sign's word does.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib

from PIL import ImageDraw, ImageFont

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels


@functools.cache
def font_dir() -> pathlib.Path:
    """The DejaVu fonts shipped in the matplotlib wheel, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "matplotlib is not installed; kdod renders plates with the DejaVu fonts shipped in "
            "its wheel. Install it with `pip install matplotlib`.")
    return pathlib.Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


@functools.lru_cache(maxsize=1024)
def load_font(name: str, size: float) -> ImageFont.FreeTypeFont:
    path = font_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"Font {name} not found at {path}; is matplotlib's wheel intact?")
    return ImageFont.truetype(str(path), max(1, int(size)))


@functools.cache
def cap_height_ratio(font_name: str) -> float:
    """Height of capitals and digits as a fraction of the font size."""
    _, top, _, _ = load_font(font_name, 100).getbbox("H", anchor="ls")
    return -top / 100.0


def _draw_spaced_text(draw: ImageDraw.ImageDraw, x: float, baseline: float, text: str,
                      font: ImageFont.FreeTypeFont, fill, tracking: float) -> None:
    """Draw character by character with extra spacing, as plates space their glyphs."""
    for char in text:
        draw.text((x, baseline), char, font=font, fill=fill, anchor="ls")
        x += font.getlength(char) + tracking


def _spaced_text_width(text: str, font: ImageFont.FreeTypeFont, tracking: float) -> float:
    return sum(font.getlength(c) for c in text) + tracking * (len(text) - 1)


def draw_text_line(draw: ImageDraw.ImageDraw, box: Box, text: str, font_name: str, fill,
                   tracking_ratio: float = 0.0) -> None:
    """Draw ``text`` as large as fits in ``box`` (x0, y0, x1, y1), centred, caps filling it."""
    x0, y0, x1, y1 = box
    cap_ratio = cap_height_ratio(font_name)
    size = (y1 - y0) / cap_ratio
    font = load_font(font_name, size)
    width = _spaced_text_width(text, font, tracking_ratio * size)
    if width > x1 - x0:  # too wide: shrink to the width instead
        size *= (x1 - x0) / width
        font = load_font(font_name, size)
        width = _spaced_text_width(text, font, tracking_ratio * size)
    baseline = (y0 + y1) / 2 + cap_ratio * font.size / 2
    _draw_spaced_text(draw, (x0 + x1 - width) / 2, baseline, text, font, fill,
                      tracking_ratio * font.size)
