"""Plates: the stage that draws one plate flat, as it would look scanned head-on.

A plate has a style (colours, aspect, EU band or US header), a registration filled in from a
pattern, a registration font and, when decorated, the words around it (an EU country code, a
US state name and slogan). Registration letters exclude I, O and Q, which many plate systems
avoid because they read as 1 and 0. Where the plate goes in the scene is ``placement``'s job.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw

from tfds_builders.synthetic_plates.lettering import draw_text_line
from tfds_builders.synthetic_plates.sampling import pick

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
DIGITS = "0123456789"
REGISTRATION_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf")
EU_BLUE = (0, 51, 153, 255)  # the EU flag's colours
EU_STAR_YELLOW = (255, 204, 0, 255)

RGB = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class PlateStyle:
    """How a plate family looks; ``aspect`` is width / height before jitter."""

    name: str
    background: RGB
    ink: RGB
    border: RGB
    aspect: float
    eu_band: bool = False
    us_header: bool = False


PLATE_STYLES = (
    PlateStyle("white", (242, 242, 236), (15, 15, 15), (20, 20, 20), 4.3),
    PlateStyle("yellow", (250, 204, 22), (12, 12, 12), (20, 20, 20), 4.5),
    PlateStyle("black", (18, 18, 20), (235, 235, 235), (200, 200, 200), 4.0),
    PlateStyle("eu", (244, 244, 240), (15, 15, 15), (25, 25, 25), 4.7, eu_band=True),
    PlateStyle("us", (238, 240, 245), (20, 35, 110), (60, 60, 70), 2.0, us_header=True),
)
STYLE_NAMES = tuple(style.name for style in PLATE_STYLES)


@dataclasses.dataclass(frozen=True)
class PlateSpec:
    """One plate to draw: ``quad`` holds its four corners (TL, TR, BR, BL) in image pixels."""

    text: str  # as drawn, separators included
    style: PlateStyle
    font: str
    width: int
    height: int
    quad: np.ndarray  # float64 [4, 2] (x, y)
    on_car: bool
    header: str  # US: state name above the registration; EU: country code in the band
    footer: str  # US: slogan below the registration (may be empty)

    @property
    def registration(self) -> str:
        return registration_of(self.text)

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.quad.min(axis=0), self.quad.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


def random_registration(rng: np.random.Generator, pattern: str, letters: str = LETTERS) -> str:
    """Fill a pattern: ``L`` -> one of `letters`, ``D`` -> digit, other characters kept."""
    chars = []
    for symbol in pattern:
        if symbol == "L":
            chars.append(pick(rng, letters))
        elif symbol == "D":
            chars.append(pick(rng, DIGITS))
        else:
            chars.append(symbol)
    return "".join(chars)


def registration_of(drawn_text: str) -> str:
    """The registration as stored: upper-case letters and digits, separators left out."""
    return "".join(c for c in drawn_text.upper() if c.isalnum())


def frame_size(height: float) -> tuple[int, int]:
    """Corner radius and border width of a plate ``height`` pixels high."""
    return max(1, round(0.08 * height)), max(1, round(0.035 * height))


def plate_pixels(spec: PlateSpec, decorations: bool) -> Image.Image:
    """The flat plate, RGBA, with one transparent pixel of padding all round.

    The padding lets bilinear warping fade the edges (anti-aliasing); it carries the border
    colour so the fade does not darken them.
    """
    style, w, h = spec.style, spec.width, spec.height
    plate = Image.new("RGBA", (w + 2, h + 2), style.border + (0,))
    draw = ImageDraw.Draw(plate)
    radius, border = frame_size(h)
    draw.rounded_rectangle((1, 1, w, h), radius=radius, fill=style.background + (255,),
                           outline=style.border + (255,), width=border)
    text_box = [1 + 0.06 * w, 1 + 0.2 * h, 1 + 0.94 * w, 1 + 0.8 * h]
    if decorations and style.eu_band:
        text_box[0] = _draw_eu_band(draw, w, h, border, spec.header) + 0.03 * w
    if decorations and style.us_header:
        text_box[1], text_box[3] = 1 + 0.32 * h, 1 + 0.78 * h
        _draw_us_words(draw, spec, w, h)
    draw_text_line(draw, tuple(text_box), spec.text, spec.font, style.ink + (255,),
                   tracking_ratio=0.12)
    return plate


def _draw_eu_band(draw: ImageDraw.ImageDraw, w: int, h: int, border: int,
                  country: str) -> float:
    """Blue band with a ring of stars and the country code; returns its right edge."""
    right = 1 + border + 0.09 * w
    draw.rectangle((1 + border, 1 + border, right, h - border), fill=EU_BLUE)
    cx, cy, radius = (1 + border + right) / 2, 1 + 0.3 * h, 0.14 * h
    dot = max(0.5, 0.025 * h)
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        x, y = cx + radius * np.cos(angle), cy + radius * np.sin(angle)
        draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=EU_STAR_YELLOW)
    draw_text_line(draw, (1 + border, 1 + 0.6 * h, right, 1 + 0.8 * h), country,
                   "DejaVuSans-Bold.ttf", (255, 255, 255, 255))
    return right


def _draw_us_words(draw: ImageDraw.ImageDraw, spec: PlateSpec, w: int, h: int) -> None:
    # Vary the header look: capitalised names in red, mixed-case ones in blue.
    header_colour = (170, 20, 30, 255) if spec.header.isupper() else (20, 40, 140, 255)
    draw_text_line(draw, (1 + 0.2 * w, 1 + 0.08 * h, 1 + 0.8 * w, 1 + 0.24 * h), spec.header,
                   "DejaVuSerif-Bold.ttf", header_colour)
    if spec.footer:
        draw_text_line(draw, (1 + 0.2 * w, 1 + 0.84 * h, 1 + 0.8 * w, 1 + 0.92 * h),
                       spec.footer, "DejaVuSans.ttf", spec.style.ink + (255,))
